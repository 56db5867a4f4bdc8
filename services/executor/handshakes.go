package executor

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// SSH handshakes cost the hosts' sshd real CPU, and an sshd with more
// unauthenticated connections than it allows (OpenSSH's MaxStartups) drops
// new ones: a reset or EOF before its banner or during the key exchange.
// The executor therefore bounds the handshakes it has in flight twice: in
// all, and per target address range (hosts of one range often share a
// network path, a load balancer or a hypervisor). Each bound is an AIMD
// window, as TCP's congestion window: it grows by one per success up to its
// ceiling until the first sign of overload, by one per window of successes
// after that, and halves on a reset or a stalled handshake, never below 1.
const (
	initialHandshakeWindow = 8
	// maxHandshakeRanges bounds the ranges whose windows are remembered;
	// the least recently used idle one is forgotten first.
	maxHandshakeRanges = 1024
	// handshakeLogEvery rate-limits the log lines of window changes.
	handshakeLogEvery = 5 * time.Second
)

// aimdWindow is one additive-increase, multiplicative-decrease bound.
type aimdWindow struct {
	limit    float64 // handshakes allowed in flight: 1 ≤ limit ≤ ceiling
	ceiling  float64
	inFlight int
	// cutSeq is the sequence number of the first handshake begun after the
	// last decrease: a failure of one begun before it was already paid for
	// by that decrease (a burst of resets is one signal, not many).
	cutSeq uint64
	cut    bool // a decrease happened: growth is additive per window from then on
}

func newAIMDWindow(ceiling int) aimdWindow {
	c := float64(max(ceiling, 1))
	return aimdWindow{limit: min(initialHandshakeWindow, c), ceiling: c}
}

// size is the number of handshakes the window allows in flight.
func (w *aimdWindow) size() int { return int(w.limit) }

func (w *aimdWindow) room() bool { return w.inFlight < w.size() }

// succeeded grows the window after a handshake that completed.
func (w *aimdWindow) succeeded() {
	if w.cut {
		w.limit += 1 / w.limit
	} else {
		w.limit++
	}
	w.limit = min(w.limit, w.ceiling)
}

// overloaded halves the window after a handshake (sequence number seq) the
// host reset or stalled, unless a decrease since it began already counted
// it; next is the sequence number the next handshake will get. It reports
// whether the window shrank.
func (w *aimdWindow) overloaded(seq, next uint64) bool {
	if w.cut && seq < w.cutSeq {
		return false
	}
	w.limit = max(1, float64(w.size())/2)
	w.cut, w.cutSeq = true, next
	return true
}

// handshakeResult is what a finished handshake says about the host's load.
type handshakeResult int

const (
	handshakeNeutral    handshakeResult = iota // says nothing (refused, auth failed, canceled)
	handshakeOK                                // completed: the window may grow
	handshakeOverloaded                        // reset or stalled: the window halves
)

// rangeWindow is the window of one address range.
type rangeWindow struct {
	aimdWindow
	key      string
	waiting  int    // acquirers queued for it: it is not forgotten meanwhile
	lastUsed uint64 // the gate's sequence when it was last used
}

// handshakeWaiter is an acquirer queued until both windows have room.
type handshakeWaiter struct {
	rng   *rangeWindow
	ready chan struct{}
	tk    *handshakeTicket // set when granted, before ready is closed
}

// handshakeGate grants handshake slots under the executor's window and the
// target range's window. Waiters are served in arrival order, skipping
// those whose range is full, so that one overloaded range does not hold up
// the others.
type handshakeGate struct {
	ceiling int
	log     *slog.Logger
	now     func() time.Time
	// onChange reports the executor window's size and the handshakes in
	// flight after each change (the metrics' gauges).
	onChange func(window, inFlight int)

	mu      sync.Mutex
	all     aimdWindow
	ranges  map[string]*rangeWindow
	waiters []*handshakeWaiter
	seq     uint64
	lastLog map[slog.Level]time.Time
	quiet   map[slog.Level]int // changes not logged since the last line
}

func newHandshakeGate(ceiling int, log *slog.Logger, now func() time.Time, onChange func(window, inFlight int)) *handshakeGate {
	if onChange == nil {
		onChange = func(int, int) {}
	}
	g := &handshakeGate{ceiling: max(ceiling, 1), log: log, now: now, onChange: onChange, all: newAIMDWindow(ceiling),
		ranges: map[string]*rangeWindow{}, lastLog: map[slog.Level]time.Time{}, quiet: map[slog.Level]int{}}
	onChange(g.all.size(), 0)
	return g
}

// handshakeTicket is one granted handshake; done gives it back.
type handshakeTicket struct {
	g   *handshakeGate
	rng *rangeWindow
	seq uint64
}

// acquire waits until a handshake to addr may begin, or ctx ends.
func (g *handshakeGate) acquire(ctx context.Context, addr string) (*handshakeTicket, error) {
	key := addrRange(addr)
	g.mu.Lock()
	rng := g.rangeFor(key)
	if g.all.room() && rng.room() {
		tk := g.take(rng)
		g.mu.Unlock()
		return tk, nil
	}
	w := &handshakeWaiter{rng: rng, ready: make(chan struct{})}
	rng.waiting++
	g.waiters = append(g.waiters, w)
	g.mu.Unlock()

	select {
	case <-w.ready:
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	rng.waiting--
	if w.tk != nil {
		if ctx.Err() == nil {
			return w.tk, nil
		}
		g.finish(w.tk, handshakeNeutral)
		return nil, ctx.Err()
	}
	for i, x := range g.waiters {
		if x == w {
			g.waiters = append(g.waiters[:i], g.waiters[i+1:]...)
			break
		}
	}
	return nil, ctx.Err()
}

// done gives the ticket back with what its handshake said about the load.
func (tk *handshakeTicket) done(r handshakeResult) {
	tk.g.mu.Lock()
	defer tk.g.mu.Unlock()
	tk.g.finish(tk, r)
}

// windows reports the executor window's size and that of addr's range.
func (g *handshakeGate) windows(addr string) (all, rng int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.ranges[addrRange(addr)]
	if r == nil {
		fresh := newAIMDWindow(g.ceiling)
		return g.all.size(), fresh.size()
	}
	return g.all.size(), r.size()
}

// take counts a handshake in flight. g.mu is held.
func (g *handshakeGate) take(rng *rangeWindow) *handshakeTicket {
	g.seq++
	g.all.inFlight++
	rng.inFlight++
	rng.lastUsed = g.seq
	g.onChange(g.all.size(), g.all.inFlight)
	return &handshakeTicket{g: g, rng: rng, seq: g.seq}
}

// finish ends a handshake, adjusts both windows and wakes the waiters that
// now fit. g.mu is held.
func (g *handshakeGate) finish(tk *handshakeTicket, r handshakeResult) {
	g.all.inFlight--
	tk.rng.inFlight--
	beforeAll, beforeRange := g.all.size(), tk.rng.size()
	switch r {
	case handshakeOK:
		g.all.succeeded()
		tk.rng.succeeded()
	case handshakeOverloaded:
		g.all.overloaded(tk.seq, g.seq+1)
		tk.rng.overloaded(tk.seq, g.seq+1)
	}
	if afterAll, afterRange := g.all.size(), tk.rng.size(); afterAll != beforeAll || afterRange != beforeRange {
		g.logChange(r, tk.rng.key, beforeAll, afterAll, beforeRange, afterRange)
	}
	g.onChange(g.all.size(), g.all.inFlight)
	g.dispatch()
}

// dispatch grants queued waiters in order while the executor window has
// room. g.mu is held.
func (g *handshakeGate) dispatch() {
	kept := g.waiters[:0]
	for _, w := range g.waiters {
		if g.all.room() && w.rng.room() {
			w.tk = g.take(w.rng) // in flight from now: its slot is not handed out twice
			close(w.ready)
			continue
		}
		kept = append(kept, w)
	}
	clear(g.waiters[len(kept):])
	g.waiters = kept
}

// rangeFor returns the window of a range, remembering a new one and
// forgetting the least recently used idle one when there are too many.
// g.mu is held.
func (g *handshakeGate) rangeFor(key string) *rangeWindow {
	if r := g.ranges[key]; r != nil {
		return r
	}
	if len(g.ranges) >= maxHandshakeRanges {
		var oldest *rangeWindow
		for _, r := range g.ranges {
			if r.inFlight == 0 && r.waiting == 0 && (oldest == nil || r.lastUsed < oldest.lastUsed) {
				oldest = r
			}
		}
		if oldest != nil {
			delete(g.ranges, oldest.key)
		}
	}
	r := &rangeWindow{aimdWindow: newAIMDWindow(g.ceiling), key: key, lastUsed: g.seq}
	g.ranges[key] = r
	return r
}

// logChange logs a change of a window size: shrinking at info, growing at
// debug, each at most once per handshakeLogEvery with the number of
// changes not logged since. g.mu is held.
func (g *handshakeGate) logChange(r handshakeResult, key string, beforeAll, afterAll, beforeRange, afterRange int) {
	level, msg := slog.LevelDebug, "SSH handshake window grew"
	if r == handshakeOverloaded {
		level, msg = slog.LevelInfo, "SSH handshake window halved: a host reset or stalled a handshake"
	}
	if !g.log.Enabled(context.Background(), level) {
		return
	}
	now := g.now()
	if last, ok := g.lastLog[level]; ok && now.Sub(last) < handshakeLogEvery {
		g.quiet[level]++
		return
	}
	g.lastLog[level] = now
	g.log.Log(context.Background(), level, msg, "range", key, "window", afterAll, "was", beforeAll,
		"range_window", afterRange, "range_was", beforeRange, "ceiling", g.ceiling, "changes_not_logged", g.quiet[level])
	g.quiet[level] = 0
}

// addrRange names the address range of a host:port: its /24 for IPv4, its
// /64 for IPv6; a host name is a range of its own (it is not resolved here).
func addrRange(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return strings.ToLower(host)
	}
	ip = ip.Unmap().WithZone("")
	bits := 24
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return ip.String()
	}
	return p.String()
}
