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
	"log/slog"
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
	DefaultOutputMaxAge   = 24 * time.Hour
	DefaultOutputMaxBytes = 8 << 30
	DefaultAckWait        = 30 * time.Second
	DefaultMaxDeliver     = 10
)

// StreamsConfig sizes the streams. Replicas 0 means the default of
// Replicas: min(3, JetStream servers), so 1 on a single server.
type StreamsConfig struct {
	Replicas       int
	OutputMaxAge   time.Duration // how long live transcripts stay replayable (archives keep them for good)
	OutputMaxBytes int64
	AckWait        time.Duration // how long a delivered task or run may go without an ack or in-progress ack; executors read it back from the consumers
	MaxDeliver     int
	Logger         *slog.Logger // says what a start kept or created; nil: nothing is logged
}

// CheckAndSetDefaults fills zero fields.
func (c *StreamsConfig) CheckAndSetDefaults() error {
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("stream replicas %d: want 1..5, or 0 for the default", c.Replicas)
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
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// streamConfigs are testum's streams as c asks for them with replicas
// copies each.
func streamConfigs(c StreamsConfig, replicas int) []jetstream.StreamConfig {
	// Output is a replayable copy (PostgreSQL and the log archive are the
	// records), so on a single node it flushes asynchronously: a sync per
	// chunk would bound streaming by the disk's sync rate. Work streams keep
	// the default persist mode, which with SyncAlways on the server means
	// every acknowledged message is on disk. NATS allows the asynchronous
	// mode only on R1 streams.
	replayPersist := jetstream.DefaultPersistMode
	if replicas == 1 {
		replayPersist = jetstream.AsyncPersistMode
	}
	return []jetstream.StreamConfig{
		{
			Name: StreamRuns, Subjects: []string{subjRun + "*"},
			Retention: jetstream.WorkQueuePolicy, Discard: jetstream.DiscardNew,
			Storage: jetstream.FileStorage, Replicas: replicas, Duplicates: 2 * time.Minute,
		},
		{
			Name: StreamTasks, Subjects: []string{subjTask + "*.*"},
			Retention: jetstream.WorkQueuePolicy, Discard: jetstream.DiscardNew,
			Storage: jetstream.FileStorage, Replicas: replicas, Duplicates: 2 * time.Minute,
		},
		{
			Name: StreamOutput, Subjects: []string{subjOutput + "*.*"},
			Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld,
			MaxAge: c.OutputMaxAge, MaxBytes: c.OutputMaxBytes, MaxMsgSize: MaxChunk + chunkHeadroom,
			Storage: jetstream.FileStorage, Replicas: replicas, Duplicates: 2 * time.Minute,
			PersistMode: replayPersist,
		},
	}
}

// ensureConsumers creates or updates the durable consumers. Their settings
// (ack wait, max deliver) follow the configuration of every start: the
// executors read the ack wait back from them.
func ensureConsumers(ctx context.Context, js jetstream.JetStream, c StreamsConfig) error {
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
