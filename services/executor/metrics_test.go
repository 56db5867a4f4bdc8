package executor

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	retry "github.com/sethvargo/go-retry"

	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/metrics"
)

// A transcript counts the output it accepts and every publish it tries
// again after a failure.
func TestTranscriptCountsBytesAndRetries(t *testing.T) {
	m := metrics.New()
	failures := 2
	pub := &fakeOutput{fail: func(bus.OutputMsg) error {
		if failures > 0 {
			failures--
			return errors.New("nats: timeout")
		}
		return nil
	}}
	cfg := transcriptConfig{pub: pub, spoolDir: t.TempDir(), log: slog.New(slog.DiscardHandler), m: m,
		backoff: func() retry.Backoff { return retry.NewConstant(time.Millisecond) }}
	tr := newTranscript(context.Background(), cfg, testRunID, 2, 1, "web01", 10)
	_, _ = tr.write(bus.TypeStdout, []byte("hello "))
	_, _ = tr.write(bus.TypeStderr, []byte("world, past the cap"))
	tr.close()
	if got := testutil.ToFloat64(m.OutputBytes); got != 10 {
		t.Errorf("output bytes %v, want the 10 accepted up to the cap", got)
	}
	if got := testutil.ToFloat64(m.PublishRetries); got != 2 {
		t.Errorf("publish retries %v, want 2", got)
	}
	if len(pub.sent()) == 0 {
		t.Error("nothing published after the retries")
	}
}
