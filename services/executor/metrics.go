package executor

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/metrics"
	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/testum"
)

// execMetrics are the process's metrics with the executor's own series
// looked up once.
type execMetrics struct {
	*metrics.Metrics
	slotsTotal, slotsInUse prometheus.Gauge
}

func newExecMetrics(m *metrics.Metrics) execMetrics {
	if m == nil {
		m = metrics.New()
	}
	return execMetrics{Metrics: m, slotsTotal: m.ExecutorSlots.WithLabelValues(metrics.SlotsTotal),
		slotsInUse: m.ExecutorSlots.WithLabelValues(metrics.SlotsInUse)}
}

// online counts the executor's slots while it runs; the returned func
// takes them back.
func (m execMetrics) online(slots int) func() {
	m.slotsTotal.Add(float64(slots))
	return func() { m.slotsTotal.Sub(float64(slots)) }
}

// slotUsed counts a slot taken (+1) or given back (-1). An Executor built
// by hand (in unit tests) has no gauges.
func (m execMetrics) slotUsed(d float64) {
	if m.slotsInUse != nil {
		m.slotsInUse.Add(d)
	}
}

// coordinating counts a run coordinated here until the returned func.
func (m execMetrics) coordinating() func() {
	m.CoordinatorRuns.Inc()
	return m.CoordinatorRuns.Dec
}

// hostEnded counts a host that reached a final state.
func (m execMetrics) hostEnded(s testum.HostState) {
	if s.Final() {
		m.HostsTotal.WithLabelValues(string(s)).Inc()
	}
}

// dialed records a dial that began at start: its time when it succeeded,
// its class when it failed (not when ctx ended: that is no host's fault).
func (m execMetrics) dialed(ctx context.Context, start time.Time, err error) {
	switch {
	case err == nil:
		m.SSHHandshake.Observe(time.Since(start).Seconds())
	case ctx.Err() == nil:
		m.SSHHandshakeFailures.WithLabelValues(string(sshx.ClassOf(err))).Inc()
	}
}

// handshakeGauges returns the handshake gate's onChange: it adds this
// executor's changes to the process's gauges, which other executors of the
// process share.
func (m execMetrics) handshakeGauges() func(window, inFlight int) {
	var mu sync.Mutex
	var lastWindow, lastInFlight int
	return func(window, inFlight int) {
		mu.Lock()
		defer mu.Unlock()
		m.SSHHandshakeWindow.Add(float64(window - lastWindow))
		m.SSHHandshakesActive.Add(float64(inFlight - lastInFlight))
		lastWindow, lastInFlight = window, inFlight
	}
}

func (m execMetrics) reaped(action string) { m.ReaperActions.WithLabelValues(action).Inc() }

// readPending makes scrapes read the task consumer's pending count.
func (m execMetrics) readPending(cons jetstream.Consumer) {
	m.ReadTasksPending(func(ctx context.Context) (float64, error) {
		info, err := cons.Info(ctx)
		if err != nil {
			return 0, err
		}
		return float64(info.NumPending), nil
	})
}

// timedPublisher times every JetStream publish of the executor.
type timedPublisher struct {
	js bus.Publisher
	h  prometheus.Histogram
}

func (p timedPublisher) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	start := time.Now()
	ack, err := p.js.PublishMsg(ctx, m, opts...)
	p.h.Observe(time.Since(start).Seconds())
	return ack, err
}
