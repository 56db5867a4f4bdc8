package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	retry "github.com/sethvargo/go-retry"

	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/testenv"
	"github.com/testum/testum/libs/testum"
)

func tinyBackoff() retry.Backoff { return retry.NewConstant(time.Millisecond) }

func TestRetryUntil(t *testing.T) {
	t.Parallel()
	errDown := errors.New("database is restarting")
	t.Run("retries until it succeeds", func(t *testing.T) {
		var calls int
		err := retryUntil(t.Context(), tinyBackoff(), time.Minute, nil, "", func(context.Context) error {
			if calls++; calls < 5 {
				return errDown
			}
			return nil
		})
		if err != nil || calls != 5 {
			t.Fatalf("err %v after %d calls, want success after 5", err, calls)
		}
	})
	t.Run("gives up when the backoff stops", func(t *testing.T) {
		var calls int
		err := retryUntil(t.Context(), retry.WithMaxRetries(2, tinyBackoff()), time.Minute, nil, "", func(context.Context) error {
			calls++
			return errDown
		})
		if !errors.Is(err, errDown) || calls != 3 {
			t.Fatalf("err %v after %d calls, want %v after 3", err, calls, errDown)
		}
	})
	t.Run("stops when ctx ends and returns what failed", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		var calls int
		err := retryUntil(ctx, tinyBackoff(), time.Minute, nil, "", func(context.Context) error {
			if calls++; calls == 3 {
				cancel()
			}
			return errDown
		})
		if !errors.Is(err, errDown) || calls != 3 {
			t.Fatalf("err %v after %d calls, want %v after 3", err, calls, errDown)
		}
	})
	t.Run("each try has its own deadline", func(t *testing.T) {
		var calls int
		err := retryUntil(t.Context(), tinyBackoff(), time.Millisecond, nil, "", func(ctx context.Context) error {
			if calls++; calls == 1 {
				<-ctx.Done() // a hung try ends at its deadline and is retried
				return ctx.Err()
			}
			return nil
		})
		if err != nil || calls != 2 {
			t.Fatalf("err %v after %d calls, want success after 2", err, calls)
		}
	})
}

func TestJitteredBackoffIsCapped(t *testing.T) {
	t.Parallel()
	b := jittered(100*time.Millisecond, 5*time.Second)
	for i := range 50 {
		d, stop := b.Next()
		if stop || d <= 0 || d > 5*time.Second {
			t.Fatalf("try %d: wait %s (stop %v), want within (0, 5s]", i, d, stop)
		}
	}
}

// TestTranscriptPublishGivesUp: a message NATS keeps refusing is given up
// when the publish backoff stops, with the error naming its sequence.
func TestTranscriptPublishGivesUp(t *testing.T) {
	t.Parallel()
	errFull := errors.New("stream full")
	var calls atomic.Int32
	pub := &fakeOutput{fail: func(bus.OutputMsg) error { calls.Add(1); return errFull }}
	cfg := transcriptConfig{pub: pub, spoolDir: t.TempDir(), log: slog.New(slog.DiscardHandler),
		backoff: func() retry.Backoff { return retry.WithMaxRetries(3, tinyBackoff()) }}
	tr := newTranscript(t.Context(), cfg, testRunID, 2, 1, "web01", 1<<20)
	err := tr.publish(outItem{typ: bus.TypeStdout, data: []byte("x"), at: testAt()}, 7)
	if !errors.Is(err, errFull) || calls.Load() != 4 {
		t.Fatalf("err %v after %d publishes, want %v after 4", err, calls.Load(), errFull)
	}
	if got := err.Error(); got != "seq 7: stream full" {
		t.Fatalf("error %q", got)
	}
}

// TestAckWaitComesFromTheConsumers: the executor's ack wait is the one the
// consumers were created with, not a setting of its own.
func TestAckWaitComesFromTheConsumers(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t)
	_, js := srv.JetStream(t)
	const wait = 7 * time.Second
	if err := bus.EnsureStreams(t.Context(), js, bus.StreamsConfig{AckWait: wait}); err != nil {
		t.Fatal(err)
	}
	e := &Executor{js: js, log: slog.New(slog.DiscardHandler)}
	tasks, runs, err := e.consumers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if e.ackWait != wait {
		t.Fatalf("ack wait %s, want the consumers' %s", e.ackWait, wait)
	}
	if tasks.CachedInfo().Name != bus.ConsumerExecutors || runs.CachedInfo().Name != bus.ConsumerCoordinators {
		t.Fatalf("consumers %s and %s", tasks.CachedInfo().Name, runs.CachedInfo().Name)
	}
}

// TestWhileUnavailable: the reads before a command starts wait out a
// database that is down and pass every other answer through at once.
func TestWhileUnavailable(t *testing.T) {
	t.Parallel()
	down := &testum.Error{Code: testum.CodeUnavailable, Message: "the database is unavailable; try again"}
	t.Run("waits while the database is unavailable", func(t *testing.T) {
		var calls int
		err := whileUnavailable(t.Context(), nil, "", func(context.Context) error {
			if calls++; calls < 3 {
				return fmt.Errorf("reading platform: %w", down)
			}
			return nil
		})
		if err != nil || calls != 3 {
			t.Fatalf("err %v after %d calls, want success after 3", err, calls)
		}
	})
	t.Run("returns any other error at once", func(t *testing.T) {
		var calls int
		missing := &testum.Error{Code: testum.CodeNotFound, Message: "platform not found"}
		err := whileUnavailable(t.Context(), nil, "", func(context.Context) error {
			calls++
			return missing
		})
		if !errors.Is(err, missing) || calls != 1 {
			t.Fatalf("err %v after %d calls, want %v after 1", err, calls, missing)
		}
	})
	t.Run("stops when ctx ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		var calls int
		err := whileUnavailable(ctx, nil, "", func(context.Context) error {
			if calls++; calls == 2 {
				cancel()
			}
			return down
		})
		if testum.CodeOf(err) != testum.CodeUnavailable || calls != 2 {
			t.Fatalf("err %v after %d calls, want unavailable after 2", err, calls)
		}
	})
}
