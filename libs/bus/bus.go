// Package bus is the messaging contract between gateways and executors: the
// JetStream streams and consumers, the subjects and their parsing, and the
// codecs of every message (run, task, transcript output with its headers,
// cancel, event). Nothing else in the code spells a subject, a stream or a
// header name, or encodes a message by hand.
package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Streams and durable consumers.
const (
	StreamRuns   = "TESTUM_RUNS"   // work queue: one message per accepted run, taken by a coordinator
	StreamTasks  = "TESTUM_TASKS"  // work queue: one message per (run, host, attempt)
	StreamOutput = "TESTUM_OUTPUT" // limits: each run's transcript (chunks, host status, exit, done)

	ConsumerCoordinators = "coordinators"
	ConsumerExecutors    = "executors"
)

// Defaults of StreamsConfig; testum's settings table shows the same values.
const (
	DefaultReplicas       = 1
	DefaultOutputMaxAge   = 24 * time.Hour
	DefaultOutputMaxBytes = 8 << 30
	DefaultAckWait        = 30 * time.Second
	DefaultMaxDeliver     = 10
)

// StreamsConfig sizes the streams. Replicas is 1 for the embedded server and 3
// for a production cluster.
type StreamsConfig struct {
	Replicas       int
	OutputMaxAge   time.Duration // how long live transcripts stay replayable (archives keep them for good)
	OutputMaxBytes int64
	AckWait        time.Duration // how long a delivered task or run may go without an ack or in-progress ack; executors read it back from the consumers
	MaxDeliver     int
}

// CheckAndSetDefaults fills zero fields.
func (c *StreamsConfig) CheckAndSetDefaults() error {
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("stream replicas %d: want 1..5", c.Replicas)
	}
	if c.OutputMaxAge == 0 {
		c.OutputMaxAge = DefaultOutputMaxAge
	}
	if c.OutputMaxBytes == 0 {
		c.OutputMaxBytes = DefaultOutputMaxBytes
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	return nil
}

// EnsureStreams creates or updates every stream and durable consumer. It is
// idempotent: every gateway and executor calls it at start.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, c StreamsConfig) error {
	if err := c.CheckAndSetDefaults(); err != nil {
		return err
	}
	// Output is a replayable copy (PostgreSQL and the log archive are the
	// records), so on a single node it flushes asynchronously: a sync per
	// chunk would bound streaming by the disk's sync rate. Work streams keep
	// the default persist mode, which with SyncAlways on the server means
	// every acknowledged message is on disk.
	replayPersist := jetstream.DefaultPersistMode
	if c.Replicas == 1 {
		replayPersist = jetstream.AsyncPersistMode
	}
	streams := []jetstream.StreamConfig{
		{
			Name: StreamRuns, Subjects: []string{subjRun + "*"},
			Retention: jetstream.WorkQueuePolicy, Discard: jetstream.DiscardNew,
			Storage: jetstream.FileStorage, Replicas: c.Replicas, Duplicates: 2 * time.Minute,
		},
		{
			Name: StreamTasks, Subjects: []string{subjTask + "*.*"},
			Retention: jetstream.WorkQueuePolicy, Discard: jetstream.DiscardNew,
			Storage: jetstream.FileStorage, Replicas: c.Replicas, Duplicates: 2 * time.Minute,
		},
		{
			Name: StreamOutput, Subjects: []string{subjOutput + "*.*"},
			Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld,
			MaxAge: c.OutputMaxAge, MaxBytes: c.OutputMaxBytes, MaxMsgSize: MaxChunk + 4096,
			Storage: jetstream.FileStorage, Replicas: c.Replicas, Duplicates: 2 * time.Minute,
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
