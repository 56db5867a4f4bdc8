// Package bus is the messaging contract between gateways and executors: the
// JetStream streams and consumers, the subjects, the headers of output
// messages and the JSON of task, run and event messages. Nothing else in the
// code spells a subject or a stream name.
package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Streams and durable consumers.
const (
	StreamRuns   = "TESTUM_RUNS"   // work queue: one message per accepted run, taken by a coordinator
	StreamTasks  = "TESTUM_TASKS"  // work queue: one message per (run, host, attempt)
	StreamOutput = "TESTUM_OUTPUT" // limits: each run's transcript (chunks, host status, exit, done)
	StreamEvents = "TESTUM_EVENTS" // limits: state transitions as JSON, for services

	ConsumerCoordinators = "coordinators"
	ConsumerExecutors    = "executors"
)

// RunSubject carries the "run accepted" message of a run.
func RunSubject(run uuid.UUID) string { return "testum.run." + run.String() }

// TaskSubject carries the task of one host of a run.
func TaskSubject(run uuid.UUID, idx int) string {
	return "testum.task." + run.String() + "." + strconv.Itoa(idx)
}

// OutputSubject carries one host's transcript: chunks, status and exit.
func OutputSubject(run uuid.UUID, idx int) string {
	return "testum.out." + run.String() + "." + strconv.Itoa(idx)
}

// OutputRunSubject carries run-level transcript messages (done).
func OutputRunSubject(run uuid.UUID) string { return "testum.out." + run.String() + ".run" }

// OutputFilter matches every transcript message of a run.
func OutputFilter(run uuid.UUID) string { return "testum.out." + run.String() + ".*" }

// EventSubject carries a run's state transitions.
func EventSubject(run uuid.UUID) string { return "testum.evt." + run.String() }

// CancelSubject is the core NATS subject that tells every executor to end a
// run's sessions.
func CancelSubject(run uuid.UUID) string { return "testum.ctl.cancel." + run.String() }

// CancelAll matches every cancel message.
const CancelAll = "testum.ctl.cancel.*"

// ParseTaskSubject returns the run and host index of a task subject.
func ParseTaskSubject(subj string) (uuid.UUID, int, error) {
	parts := strings.Split(subj, ".")
	if len(parts) != 4 || parts[0] != "testum" || parts[1] != "task" {
		return uuid.Nil, 0, fmt.Errorf("not a task subject: %q", subj)
	}
	run, err := uuid.Parse(parts[2])
	if err != nil {
		return uuid.Nil, 0, fmt.Errorf("task subject %q: %w", subj, err)
	}
	idx, err := strconv.Atoi(parts[3])
	if err != nil {
		return uuid.Nil, 0, fmt.Errorf("task subject %q: %w", subj, err)
	}
	return run, idx, nil
}

// ParseCancelSubject returns the run of a cancel subject.
func ParseCancelSubject(subj string) (uuid.UUID, error) {
	return uuid.Parse(strings.TrimPrefix(subj, "testum.ctl.cancel."))
}

// Headers of transcript messages. The payload is the raw bytes of the chunk
// (no JSON, no base64) or, for the other types, a short text.
const (
	HdrType    = "Testum-Type"    // one of the Type values
	HdrHost    = "Testum-Host"    // the host's name
	HdrSeq     = "Testum-Seq"     // per-host sequence, from 1, over the host's whole transcript
	HdrAttempt = "Testum-Attempt" // which start of the host produced it
	HdrState   = "Testum-State"   // status, exit and done: the state reached
	HdrExit    = "Testum-Exit"    // exit: the exit code
	HdrSignal  = "Testum-Signal"  // exit: the signal that ended the command, if any
	HdrAt      = "Testum-At"      // RFC 3339 (nanoseconds) time the executor saw it
)

// Type is the kind of a transcript message; the WebSocket messages use the
// same names.
type Type string

const (
	TypeStdout Type = "stdout"
	TypeStderr Type = "stderr"
	TypeStatus Type = "status" // a host state transition; payload is the state
	TypeExit   Type = "exit"   // a host finished; payload is the exit code (or the state when none)
	TypeError  Type = "error"  // why a host failed to run, or a truncation/gap notice
	TypeDone   Type = "done"   // the run finished; payload is the run state
)

// RunMsg is the body of a run message.
type RunMsg struct {
	RunID uuid.UUID `json:"run_id"`
}

// TaskMsg is the body of a host task. Everything else (command, platform,
// credential) is read from PostgreSQL so that no secret travels in NATS.
type TaskMsg struct {
	RunID   uuid.UUID `json:"run_id"`
	Idx     int       `json:"idx"`
	Attempt int       `json:"attempt"` // the start this task authorizes: 1 for the first
}

// MsgID is the Nats-Msg-Id of a task: a republished task of the same attempt
// is dropped by the stream's duplicate window.
func (t TaskMsg) MsgID() string { return fmt.Sprintf("%s/%d/%d", t.RunID, t.Idx, t.Attempt) }

// Event is one state transition, published on EventSubject.
type Event struct {
	RunID    uuid.UUID `json:"run_id"`
	Kind     string    `json:"kind"` // "host" or "run"
	Idx      int       `json:"idx,omitempty"`
	Host     string    `json:"host,omitempty"`
	State    string    `json:"state"`
	ExitCode *int      `json:"exit_code,omitempty"`
	At       time.Time `json:"at"`
}

// StreamsConfig sizes the streams. Replicas is 1 for the embedded server and 3
// for a production cluster.
type StreamsConfig struct {
	Replicas       int
	OutputMaxAge   time.Duration // how long live transcripts stay replayable (archives keep them for good)
	OutputMaxBytes int64
	EventsMaxAge   time.Duration
	AckWait        time.Duration // how long a delivered task or run may go without an ack or in-progress ack
	MaxDeliver     int
}

// CheckAndSetDefaults fills zero fields.
func (c *StreamsConfig) CheckAndSetDefaults() error {
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("stream replicas %d: want 1..5", c.Replicas)
	}
	if c.OutputMaxAge == 0 {
		c.OutputMaxAge = 24 * time.Hour
	}
	if c.OutputMaxBytes == 0 {
		c.OutputMaxBytes = 8 << 30
	}
	if c.EventsMaxAge == 0 {
		c.EventsMaxAge = 24 * time.Hour
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 10
	}
	return nil
}

// EnsureStreams creates or updates every stream and durable consumer. It is
// idempotent: every gateway and executor calls it at start.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, c StreamsConfig) error {
	if err := c.CheckAndSetDefaults(); err != nil {
		return err
	}
	// Output and events are replayable copies (PostgreSQL and the log archive
	// are the records), so on a single node they flush asynchronously: syncing
	// every 32 KiB chunk costs ~2 ms here and would cap streaming at ~15 MB/s.
	// Work streams keep the default persist mode, which with SyncAlways on the
	// server means every acknowledged message is on disk.
	replayPersist := jetstream.DefaultPersistMode
	if c.Replicas == 1 {
		replayPersist = jetstream.AsyncPersistMode
	}
	streams := []jetstream.StreamConfig{
		{
			Name: StreamRuns, Subjects: []string{"testum.run.*"},
			Retention: jetstream.WorkQueuePolicy, Discard: jetstream.DiscardNew,
			Storage: jetstream.FileStorage, Replicas: c.Replicas, Duplicates: 2 * time.Minute,
		},
		{
			Name: StreamTasks, Subjects: []string{"testum.task.*.*"},
			Retention: jetstream.WorkQueuePolicy, Discard: jetstream.DiscardNew,
			Storage: jetstream.FileStorage, Replicas: c.Replicas, Duplicates: 2 * time.Minute,
		},
		{
			Name: StreamOutput, Subjects: []string{"testum.out.*.*"},
			Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld,
			MaxAge: c.OutputMaxAge, MaxBytes: c.OutputMaxBytes, MaxMsgSize: MaxChunk + 4096,
			Storage: jetstream.FileStorage, Replicas: c.Replicas, Duplicates: 2 * time.Minute,
			PersistMode: replayPersist,
		},
		{
			Name: StreamEvents, Subjects: []string{"testum.evt.*"},
			Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld,
			MaxAge: c.EventsMaxAge, Storage: jetstream.FileStorage, Replicas: c.Replicas,
			PersistMode: replayPersist,
		},
	}
	for _, sc := range streams {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
	}
	consumers := []struct {
		stream string
		cfg    jetstream.ConsumerConfig
	}{
		{StreamRuns, jetstream.ConsumerConfig{
			Durable: ConsumerCoordinators, AckPolicy: jetstream.AckExplicitPolicy,
			AckWait: c.AckWait, MaxDeliver: c.MaxDeliver, MaxAckPending: 100000,
		}},
		{StreamTasks, jetstream.ConsumerConfig{
			Durable: ConsumerExecutors, AckPolicy: jetstream.AckExplicitPolicy,
			AckWait: c.AckWait, MaxDeliver: c.MaxDeliver, MaxAckPending: 100000,
			MaxRequestBatch: 1000,
		}},
	}
	for _, cc := range consumers {
		if _, err := js.CreateOrUpdateConsumer(ctx, cc.stream, cc.cfg); err != nil {
			return fmt.Errorf("consumer %s on %s: %w", cc.cfg.Durable, cc.stream, err)
		}
	}
	return nil
}

// MaxChunk is the largest output payload: well under NATS's 1 MiB default.
const MaxChunk = 32 << 10

// MaxDeliveriesAdvisory is the subject on which JetStream announces that a
// message of the given stream and consumer reached MaxDeliver.
func MaxDeliveriesAdvisory(stream, consumer string) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + stream + "." + consumer
}

// MaxDeliveries is the body of that advisory (the fields we read).
type MaxDeliveries struct {
	Stream    string `json:"stream"`
	Consumer  string `json:"consumer"`
	StreamSeq uint64 `json:"stream_seq"`
}

// PublishJSON publishes v as JSON to a JetStream subject, with a message id
// when id is not empty.
func PublishJSON(ctx context.Context, js jetstream.JetStream, subj, id string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var opts []jetstream.PublishOpt
	if id != "" {
		opts = append(opts, jetstream.WithMsgID(id))
	}
	if _, err := js.Publish(ctx, subj, data, opts...); err != nil {
		return fmt.Errorf("publish %s: %w", subj, err)
	}
	return nil
}

// ConnectOptions are the client options every testum connection uses:
// reconnect forever, and say so in the log.
func ConnectOptions(name string, logf func(msg string, args ...any)) []nats.Option {
	return []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.PingInterval(10 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logf("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { logf("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
	}
}

// IsNotFound reports whether err means a stream message does not exist.
func IsNotFound(err error) bool { return errors.Is(err, jetstream.ErrMsgNotFound) }
