package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/testum/testum/libs/testenv"
)

func TestAIMDWindow(t *testing.T) {
	w := newAIMDWindow(20)
	if w.size() != initialHandshakeWindow {
		t.Fatalf("starts at %d, want %d", w.size(), initialHandshakeWindow)
	}
	// Until the first overload: one more per success, up to the ceiling.
	for i := range 30 {
		w.succeeded()
		if want := min(initialHandshakeWindow+i+1, 20); w.size() != want {
			t.Fatalf("after %d successes: %d, want %d", i+1, w.size(), want)
		}
	}
	var seq uint64
	began := func() uint64 { seq++; return seq }
	// Handshakes begun before a decrease are one signal: a burst of their
	// failures halves the window once.
	a, b, c := began(), began(), began()
	if !w.overloaded(a, seq+1) || w.size() != 10 {
		t.Fatalf("first reset: %d, want 10", w.size())
	}
	if w.overloaded(b, seq+1) || w.overloaded(c, seq+1) || w.size() != 10 {
		t.Fatalf("the same burst halved again: %d", w.size())
	}
	// One begun after it halves again.
	if !w.overloaded(began(), seq+1) || w.size() != 5 {
		t.Fatalf("a later reset: %d, want 5", w.size())
	}
	// After a decrease growth is additive per window: +1 after about a
	// window's worth of successes, not per success.
	n := 0
	for w.size() == 5 && n < 100 {
		w.succeeded()
		n++
	}
	if w.size() != 6 || n < 5 || n > 6 {
		t.Fatalf("from 5: %d after %d successes, want 6 after 5 or 6", w.size(), n)
	}
	// Never below 1.
	for range 10 {
		w.overloaded(began(), seq+1)
	}
	if w.size() != 1 {
		t.Fatalf("after many resets: %d, want 1", w.size())
	}
	if small := newAIMDWindow(3); small.size() != 3 {
		t.Fatalf("a ceiling below the initial window: %d", small.size())
	}
}

// gateWaiting reports how many acquirers wait in g.
func gateWaiting(g *handshakeGate) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.waiters)
}

// waitFor polls cond, failing the test after a generous hang guard.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}

func TestHandshakeGateBoundsAndRanges(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, 0)}
	var gauge struct {
		sync.Mutex
		window, inFlight int
	}
	g := newHandshakeGate(4, slog.New(slog.DiscardHandler), clock.now, func(w, n int) {
		gauge.Lock()
		gauge.window, gauge.inFlight = w, n
		gauge.Unlock()
	})
	ctx := t.Context()
	acquire := func(addr string) *handshakeTicket {
		t.Helper()
		tk, err := g.acquire(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}

	// The executor window (4) bounds handshakes across ranges.
	held := []*handshakeTicket{acquire("127.0.1.1:22"), acquire("127.0.1.2:22"), acquire("127.0.2.1:22"), acquire("[::1]:22")}
	got := make(chan *handshakeTicket)
	go func() {
		tk, _ := g.acquire(ctx, "127.0.3.1:22")
		got <- tk
	}()
	waitFor(t, "a fifth acquirer to queue", func() bool { return gateWaiting(g) == 1 })
	gauge.Lock()
	if gauge.window != 4 || gauge.inFlight != 4 {
		t.Errorf("gauges: window %d, in flight %d", gauge.window, gauge.inFlight)
	}
	gauge.Unlock()
	held[0].done(handshakeOK)
	fifth := <-got

	// A reset in 127.0.1.0/24 halves its window and the executor's; the
	// other ranges keep theirs.
	held[1].done(handshakeOverloaded)
	all, rng := g.windows("127.0.1.9:22")
	if all != 2 || rng != 2 {
		t.Fatalf("after a reset: executor %d, range %d, want 2 and 2", all, rng)
	}
	if _, other := g.windows("127.0.2.9:22"); other != 4 {
		t.Fatalf("another range: %d, want 4", other)
	}
	held[2].done(handshakeNeutral)
	held[3].done(handshakeNeutral)
	fifth.done(handshakeNeutral)

	// A full range does not hold up others: with its window at 1, a second
	// acquirer for it waits while one for another range goes ahead.
	for range 2 {
		tk := acquire("127.0.1.1:22")
		g.mu.Lock()
		g.ranges[addrRange("127.0.1.1:22")].overloaded(tk.seq, g.seq+1)
		g.mu.Unlock()
		tk.done(handshakeNeutral)
	}
	if _, rng := g.windows("127.0.1.1:22"); rng != 1 {
		t.Fatalf("range window %d, want 1", rng)
	}
	first := acquire("127.0.1.1:22")
	go func() {
		tk, _ := g.acquire(ctx, "127.0.1.2:22")
		got <- tk
	}()
	waitFor(t, "the second acquirer of a full range to queue", func() bool { return gateWaiting(g) == 1 })
	other := acquire("127.0.2.1:22") // not behind the queued one
	other.done(handshakeNeutral)
	first.done(handshakeNeutral)
	(<-got).done(handshakeNeutral)
	gauge.Lock()
	if gauge.inFlight != 0 {
		t.Errorf("in flight at rest: %d", gauge.inFlight)
	}
	gauge.Unlock()
}

func TestHandshakeGateCanceledWaiter(t *testing.T) {
	g := newHandshakeGate(1, slog.New(slog.DiscardHandler), time.Now, nil)
	tk, err := g.acquire(t.Context(), "127.0.0.1:22")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error)
	go func() {
		_, err := g.acquire(ctx, "127.0.0.2:22")
		errc <- err
	}()
	waitFor(t, "the acquirer to queue", func() bool { return gateWaiting(g) == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled acquire: %v", err)
	}
	if n := gateWaiting(g); n != 0 {
		t.Fatalf("%d waiters left", n)
	}
	tk.done(handshakeOK)
	again, err := g.acquire(t.Context(), "127.0.0.2:22")
	if err != nil {
		t.Fatal(err)
	}
	again.done(handshakeNeutral)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.all.inFlight != 0 {
		t.Fatalf("in flight %d after every ticket was returned", g.all.inFlight)
	}
}

func TestHandshakeGateForgetsIdleRanges(t *testing.T) {
	g := newHandshakeGate(8, slog.New(slog.DiscardHandler), time.Now, nil)
	held, err := g.acquire(t.Context(), "10.0.0.1:22")
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxHandshakeRanges + 50 {
		tk, err := g.acquire(t.Context(), fmt.Sprintf("10.%d.%d.1:22", 1+i/256, i%256))
		if err != nil {
			t.Fatal(err)
		}
		tk.done(handshakeOK)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.ranges) > maxHandshakeRanges {
		t.Fatalf("%d ranges remembered, at most %d", len(g.ranges), maxHandshakeRanges)
	}
	if g.ranges["10.0.0.0/24"] != held.rng {
		t.Fatal("a range with a handshake in flight was forgotten")
	}
}

func TestHandshakeWindowLogsRateLimited(t *testing.T) {
	var buf testenv.LogBuffer
	clock := &fakeClock{t: time.Unix(0, 0)}
	g := newHandshakeGate(64, slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), clock.now, nil)
	reset := func() {
		tk, err := g.acquire(t.Context(), "127.0.0.1:22")
		if err != nil {
			t.Fatal(err)
		}
		tk.done(handshakeOverloaded)
	}
	for range 3 { // 8 → 4 → 2 → 1 within the same instant
		reset()
	}
	if n := len(buf.Lines("window halved")); n != 1 {
		t.Fatalf("%d lines for 3 decreases in one instant:\n%s", n, buf.String())
	}
	clock.add(handshakeLogEvery)
	tk, err := g.acquire(t.Context(), "127.0.0.1:22")
	if err != nil {
		t.Fatal(err)
	}
	tk.done(handshakeOverloaded) // at 1 already: no change, no line
	for range 2 {
		tk, err := g.acquire(t.Context(), "127.0.0.1:22")
		if err != nil {
			t.Fatal(err)
		}
		tk.done(handshakeOK)
	}
	lines := buf.Lines("window grew")
	if len(lines) != 1 || !strings.Contains(lines[0], "window=2") {
		t.Fatalf("growth lines: %q", lines)
	}
	if n := len(buf.Lines("window halved")); n != 1 {
		t.Fatalf("a line for a window that did not change:\n%s", buf.String())
	}
	reset()
	halved := buf.Lines("window halved")
	if len(halved) != 2 || !strings.Contains(halved[1], "changes_not_logged=2") || !strings.Contains(halved[1], "range=127.0.0.0/24") {
		t.Fatalf("second halving line: %q", halved)
	}
}

func TestAddrRange(t *testing.T) {
	for _, c := range []struct{ addr, want string }{
		{"127.0.1.7:22", "127.0.1.0/24"},
		{"10.1.2.3:2222", "10.1.2.0/24"},
		{"10.1.2.3", "10.1.2.0/24"},
		{"[2001:db8:1:2:3::4]:22", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:22", "fe80::/64"},
		{"[::ffff:192.0.2.9]:22", "192.0.2.0/24"},
		{"Web01.Example.com:22", "web01.example.com"},
	} {
		if got := addrRange(c.addr); got != c.want {
			t.Errorf("addrRange(%q) = %q, want %q", c.addr, got, c.want)
		}
	}
}
