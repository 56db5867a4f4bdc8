package main

// WebSocket followers of a run on the deployment while NATS nodes restart
// one after another and while the gateway they read from is killed: each
// host's output reaches the follower whole, in order, exactly once.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/bus"
)

// tickLimit bounds how many lines a host prints while it waits at the gate
// (at 0.1 s a line, four minutes).
const tickLimit = 2400

// Ticks is a shell command that prints "line 1", "line 2", ... one every
// 0.1 s until the gate is opened (the loop of Gate, with a line per turn),
// then "end N", and leaves N in the host's ticks file for TickCount.
func (m *markers) Ticks() string {
	return fmt.Sprintf(`n=0; while [ $n -lt %d ] && [ ! -e %s/open ]; do n=$((n+1)); echo "line $n"; sleep 0.1; done; `+
		`echo $n > %s/ticks-%s; echo "end $n"`, tickLimit, m.dir, m.dir, hostIP)
}

// TickCount is how many lines the host at addr printed, or -1 before its
// Ticks command ended.
func (m *markers) TickCount(addr string) int {
	ip, _, found := strings.Cut(addr, ":")
	if !found {
		ip = addr
	}
	b, err := os.ReadFile(filepath.Join(m.dir, "ticks-"+ip))
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}

// checkTicks checks that every host of run r ran once, ended ok, and that
// its stdout as the follower got it is exactly what Ticks printed there:
// no line missing, none twice, none out of order.
func checkTicks(t *testing.T, m *markers, r apiclient.Run, msgs []apiclient.WSMessage) {
	t.Helper()
	out := hostOutput(msgs, "stdout")
	for _, h := range hostsOf(r) {
		if h.State != "ok" || m.Count(h.Address) != 1 {
			t.Errorf("%s: %s, ran %d times", h.Name, h.State, m.Count(h.Address))
		}
		n := m.TickCount(h.Address)
		if n < 1 {
			t.Errorf("%s: printed no line (ticks %d)", h.Name, n)
			continue
		}
		want := make([]string, 0, n+1)
		for i := 1; i <= n; i++ {
			want = append(want, fmt.Sprintf("line %d", i))
		}
		want = append(want, fmt.Sprintf("end %d", n))
		got := strings.Split(strings.TrimSuffix(out[h.Name], "\n"), "\n")
		if diff := firstDiff(got, want); diff != "" {
			t.Errorf("%s: the follower's %d lines are not the host's %d: %s", h.Name, len(got), len(want), diff)
		}
	}
}

// firstDiff describes where got first differs from want ("" if equal).
func firstDiff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("line %d is %q, want %q", i+1, got[i], want[i])
		}
	}
	switch {
	case len(got) > len(want):
		return fmt.Sprintf("extra lines from %q on", got[len(want)])
	case len(got) < len(want):
		return fmt.Sprintf("missing lines from %q on", want[len(got)])
	}
	return ""
}

// waitStreamsCurrent waits until every stream on the cluster (the
// object store's too) and its consumers have a leader and current
// replicas.
func (d *deployment) waitStreamsCurrent(t *testing.T) {
	t.Helper()
	d.NATS.WaitJetStream(t)
	js := d.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	names := js.StreamNames(ctx)
	var streams []string
	for n := range names.Name() {
		streams = append(streams, n)
	}
	if err := names.Err(); err != nil {
		t.Fatalf("stream names: %v", err)
	}
	for _, s := range streams {
		d.NATS.WaitCurrent(t, s)
	}
}

// waitOutputConsumers polls until the transcript stream has want consumers.
func (d *deployment) waitOutputConsumers(t *testing.T, js jetstream.JetStream, want int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		n := outputState(t, js).Consumers
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d consumers on %s after %s, want %d", n, bus.StreamOutput, waitLimit, want)
		}
		time.Sleep(200 * time.Millisecond) // polling interval
	}
}

// lags are the longest times a transcript message waited between the
// executor seeing the output (its At) and the stream storing it (publish),
// and between the stream and the follower (relay): arrived is when the
// follower got each message, by stream seq. Reported, not asserted.
func (d *deployment) lags(t *testing.T, msgs []apiclient.WSMessage, arrived map[uint64]time.Time) (publish, relay time.Duration) {
	t.Helper()
	js := d.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	s, err := js.Stream(ctx, bus.StreamOutput)
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range msgs {
		at, ok := arrived[msg.Seq]
		if !ok {
			continue
		}
		m, err := s.GetMsg(ctx, msg.Seq)
		if err != nil {
			t.Fatalf("%s seq %d: %v", bus.StreamOutput, msg.Seq, err)
		}
		relay = max(relay, at.Sub(m.Time))
		if seen, err := time.Parse(time.RFC3339Nano, val(msg.At)); err == nil {
			publish = max(publish, m.Time.Sub(seen))
		}
	}
	return publish, relay
}

// followInBackground starts f.Follow on its own goroutine; the returned
// channel is closed after at least n messages, and done when Follow ends.
func followInBackground(f *follower, n int) (got, done chan struct{}) {
	got, done = make(chan struct{}), make(chan struct{})
	var once sync.Once
	onMsg := f.OnMsg
	f.OnMsg = func(i int, msg apiclient.WSMessage) {
		if onMsg != nil {
			onMsg(i, msg)
		}
		if i >= n {
			once.Do(func() { close(got) })
		}
	}
	go func() { defer close(done); f.Follow() }()
	return got, done
}

// waitClosed waits (bounded) for ch to be closed.
func waitClosed(t *testing.T, ch chan struct{}, limit time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(limit):
		t.Fatalf("%s: not within %s", what, limit)
	}
}

// tickingRun starts, through g, a run on every host of ids that prints
// Ticks until the gate opens. The gate opens at cleanup at the latest, so
// that a failed test does not leave the hosts printing.
func tickingRun(t *testing.T, g *gatewayProc, m *markers, ids []int64) string {
	t.Helper()
	t.Cleanup(func() { _ = os.WriteFile(filepath.Join(m.dir, "open"), nil, 0o644) })
	return g.startRun(t, map[string]any{"command": m.Ran() + "; " + m.Ticks(),
		"targets": map[string]any{"platform_ids": ids}, "timeout": 600})
}

// TestWebSocketRidesARollingNATSRestart: a follower attached to a run
// whose hosts print numbered lines while each NATS node in turn restarts
// (the next only once every stream is current again) gets every host's
// lines exactly once and in order.
func TestWebSocketRidesARollingNATSRestart(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 1, 1, nil)
	m := newMarkers(t, d.SSHD)
	ids := d.Fleet(t, "rr", 4, 930)
	d.waitStreamsCurrent(t)
	id := tickingRun(t, d.Gateways[0], m, ids)
	f := &follower{t: t, id: id, next: func(int) *server { return d.Gateways[0].server }}
	var prev time.Time
	var silence time.Duration         // the longest wait for a message, reported
	arrived := map[uint64]time.Time{} // by stream seq
	f.OnMsg = func(_ int, msg apiclient.WSMessage) {
		if now := time.Now(); !prev.IsZero() {
			silence = max(silence, now.Sub(prev))
		}
		prev = time.Now()
		arrived[msg.Seq] = prev
	}
	attached, done := followInBackground(f, 20)
	waitClosed(t, attached, waitLimit, "20 messages on the WebSocket")

	start := time.Now()
	for i, n := range d.NATS.Nodes {
		d.NATS.Restart(t, i)
		d.waitStreamsCurrent(t)
		t.Logf("%s restarted and every stream current again at %s", n.Name, time.Since(start).Round(time.Millisecond))
	}
	m.Open(t)
	waitClosed(t, done, 2*waitLimit, "the follower's done message")
	r := d.Gateways[0].waitRun(t, id)
	checkTicks(t, m, r, f.Msgs)
	publish, relay := d.lags(t, f.Msgs, arrived)
	t.Logf("rolling restart of %d nodes, then the run's end, in %s: %d messages, %d drops, run %s; "+
		"longest silence on the socket %s, longest wait from the executor to the stream %s, "+
		"from the stream to the socket %s", len(d.NATS.Nodes), time.Since(start).Round(time.Millisecond),
		len(f.Msgs), f.Drops, r.State, silence.Round(time.Millisecond), publish.Round(time.Millisecond),
		relay.Round(time.Millisecond))
}

// TestWebSocketResumesOnTheOtherGatewayAfterKill: a follower whose gateway
// is killed (-9) mid-run resumes (since) on the other gateway and gets
// every host's lines exactly once and in order; the killed gateway's
// transcript consumer, which it could not delete, is removed by the
// server soon, while the live one stays.
func TestWebSocketResumesOnTheOtherGatewayAfterKill(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 2, 1, nil)
	m := newMarkers(t, d.SSHD)
	ids := d.Fleet(t, "gk", 4, 940)
	js := d.JetStream(t)
	base := outputState(t, js).Consumers
	id := tickingRun(t, d.Gateways[1], m, ids)

	const beforeKill = 30
	var killed atomic.Bool
	resumedAt := -1 // messages before the first connection to the second gateway
	resumed := make(chan struct{})
	var once sync.Once
	f := &follower{t: t, id: id}
	f.next = func(int) *server {
		if !killed.Load() {
			return d.Gateways[0].server
		}
		if resumedAt < 0 {
			resumedAt = len(f.Msgs)
		}
		return d.Gateways[1].server
	}
	f.OnMsg = func(n int, _ apiclient.WSMessage) {
		if resumedAt >= 0 && n >= resumedAt+20 {
			once.Do(func() { close(resumed) })
		}
	}
	attached, done := followInBackground(f, beforeKill)
	waitClosed(t, attached, waitLimit, fmt.Sprintf("%d messages on the first gateway", beforeKill))
	killed.Store(true)
	d.Gateways[0].proc.Kill(t)
	killedAt := time.Now()
	waitClosed(t, resumed, waitLimit, "20 messages on the second gateway")

	// The follower reads on through the second gateway: its consumer stays,
	// the dead gateway's goes.
	d.waitOutputConsumers(t, js, base+1)
	t.Logf("the killed gateway's consumer removed %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	m.Open(t)
	waitClosed(t, done, 2*waitLimit, "the follower's done message")
	r := d.Gateways[1].waitRun(t, id)
	checkTicks(t, m, r, f.Msgs)
	if f.Drops == 0 {
		t.Errorf("the follower never lost the killed gateway")
	}
	d.waitOutputConsumers(t, js, base)
	t.Logf("%d messages, %d drops, run %s", len(f.Msgs), f.Drops, r.State)
}
