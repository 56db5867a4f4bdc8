package executor

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// groupCommit makes the statements of hosts that arrive together one
// statement: a fetch hands over up to fetchMax tasks at once, and hosts of
// a fan-out connect and end in bursts; each would otherwise wait for a
// round trip of its own. The first request goes alone; those that arrive
// while a statement is in flight go together in the next one, so a lone
// request waits for nothing. send returns the rows it changed, matched to
// their requests by key; a request whose row is not among them changed
// nothing.
type groupCommit[K comparable, Req, Res any] struct {
	send   func(ctx context.Context, reqs []Req) ([]Res, error)
	reqKey func(Req) K
	resKey func(Res) K
	max    int // most requests in one statement
	// timeout bounds each statement: it no longer ends with a caller's
	// context, and a hung one must not hold the queue behind it.
	timeout time.Duration
	// alone, when it holds for a statement's error, sends each of its
	// requests again in one of its own, so that a row the database refuses
	// fails only its own request (nil: never).
	alone func(error) bool

	mu      sync.Mutex
	queue   []*groupReq[Req, Res]
	running bool // a flush goroutine is working the queue
}

type groupReq[Req, Res any] struct {
	req  Req
	done chan struct{} // closed once res, ok and err are set
	res  Res
	ok   bool
	err  error
}

// do sends one request. It waits for the statement that carries it even
// when ctx ends meanwhile: a row the database changed for this executor
// must reach its caller (a claimed host would otherwise stay connecting).
func (g *groupCommit[K, Req, Res]) do(ctx context.Context, req Req) (Res, bool, error) {
	r := &groupReq[Req, Res]{req: req, done: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, r)
	if !g.running {
		g.running = true
		go g.flush(context.WithoutCancel(ctx))
	}
	g.mu.Unlock()
	<-r.done
	return r.res, r.ok, r.err
}

// flush sends the queued requests, at most max per statement, until none
// is left.
func (g *groupCommit[K, Req, Res]) flush(ctx context.Context) {
	for {
		g.mu.Lock()
		n := min(len(g.queue), g.max)
		if n == 0 {
			g.running = false
			g.queue = nil
			g.mu.Unlock()
			return
		}
		batch := append([]*groupReq[Req, Res](nil), g.queue[:n]...)
		g.queue = g.queue[n:]
		g.mu.Unlock()
		if err := g.sendBatch(ctx, batch); g.sendAlone(err, batch) {
			for _, r := range batch {
				_ = g.sendBatch(ctx, []*groupReq[Req, Res]{r})
			}
		}
	}
}

// sendBatch sends one statement and answers its requests, unless it failed
// and they are to be sent alone.
func (g *groupCommit[K, Req, Res]) sendBatch(ctx context.Context, batch []*groupReq[Req, Res]) error {
	reqs := make([]Req, len(batch))
	for i, r := range batch {
		reqs[i] = r.req
	}
	sctx, cancel := context.WithTimeout(ctx, g.timeout)
	rows, err := g.send(sctx, reqs)
	cancel()
	if g.sendAlone(err, batch) {
		return err
	}
	changed := make(map[K]Res, len(rows))
	for _, row := range rows {
		changed[g.resKey(row)] = row
	}
	for _, r := range batch {
		k := g.reqKey(r.req)
		if row, ok := changed[k]; ok && err == nil {
			// A host named twice (a task delivered twice) is changed once:
			// the first in line gets it, the other finds it taken.
			r.res, r.ok = row, true
			delete(changed, k)
		}
		r.err = err
		close(r.done)
	}
	return err
}

// groupTimeout bounds one grouped statement, like one try of keepTrying.
const groupTimeout = 15 * time.Second

func (g *groupCommit[K, Req, Res]) sendAlone(err error, batch []*groupReq[Req, Res]) bool {
	return err != nil && len(batch) > 1 && g.alone != nil && g.alone(err)
}

// hostKey names one attempt of a host.
type hostKey struct {
	run          uuid.UUID
	idx, attempt int
}

func rowKey(h testum.RunHost) hostKey { return hostKey{h.RunID, h.Idx, h.Attempt} }

// claimer claims hosts of tasks fetched together in one statement.
type claimer = groupCommit[hostKey, store.Claim, testum.RunHost]

func newClaimer(st *store.Store, executor string, most int) *claimer {
	return &claimer{max: most, timeout: groupTimeout, resKey: rowKey,
		reqKey: func(c store.Claim) hostKey { return hostKey{c.Run, c.Idx, c.Attempt} },
		send: func(ctx context.Context, claims []store.Claim) ([]testum.RunHost, error) {
			return st.RunHostsClaim(ctx, executor, claims)
		}}
}

// runner marks hosts reached together running in one statement.
type runner = groupCommit[hostKey, store.Running, store.Running]

func newRunner(st *store.Store, executor string, most int) *runner {
	key := func(r store.Running) hostKey { return hostKey{r.Run, r.Idx, r.Attempt} }
	return &runner{max: most, timeout: groupTimeout, reqKey: key, resKey: key, alone: store.Refused,
		send: func(ctx context.Context, hs []store.Running) ([]store.Running, error) {
			return st.RunHostsSetRunning(ctx, executor, hs)
		}}
}

// finisher records the ends of hosts that finish together in one statement.
type finisher = groupCommit[hostKey, store.Finish, testum.RunHost]

func newFinisher(st *store.Store, executor string, most int) *finisher {
	return &finisher{max: most, timeout: groupTimeout, resKey: rowKey, alone: store.Refused,
		reqKey: func(f store.Finish) hostKey { return hostKey{f.Run, f.Idx, f.Attempt} },
		send: func(ctx context.Context, fs []store.Finish) ([]testum.RunHost, error) {
			return st.RunHostsFinish(ctx, executor, fs)
		}}
}
