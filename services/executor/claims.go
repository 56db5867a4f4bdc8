package executor

import (
	"context"
	"sync"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// claimer makes the claims of tasks that arrive together in one statement
// (store.RunHostsClaim): a fetch hands over up to fetchMax tasks at once,
// and each would otherwise wait for a round trip of its own. The first
// claim goes alone; those that arrive while a statement is in flight go
// together in the next one, so a lone task waits for nothing.
type claimer struct {
	claim func(ctx context.Context, claims []store.Claim) ([]testum.RunHost, error)
	max   int // most claims in one statement

	mu      sync.Mutex
	queue   []*claimReq
	running bool // a flush goroutine is working the queue
}

type claimReq struct {
	c    store.Claim
	done chan struct{} // closed once host, ok and err are set
	host testum.RunHost
	ok   bool
	err  error
}

type claimKey struct {
	run          uuid.UUID
	idx, attempt int
}

func newClaimer(st *store.Store, executor string, most int) *claimer {
	return &claimer{max: most, claim: func(ctx context.Context, claims []store.Claim) ([]testum.RunHost, error) {
		return st.RunHostsClaim(ctx, executor, claims)
	}}
}

// do claims one host, as RunHostClaim does. It waits for the statement
// that carries its claim even when ctx ends meanwhile: a host the database
// gave this executor must reach its task, or it would stay connecting.
func (c *claimer) do(ctx context.Context, run uuid.UUID, idx, attempt int) (testum.RunHost, bool, error) {
	r := &claimReq{c: store.Claim{Run: run, Idx: idx, Attempt: attempt}, done: make(chan struct{})}
	c.mu.Lock()
	c.queue = append(c.queue, r)
	if !c.running {
		c.running = true
		go c.flush(ctx)
	}
	c.mu.Unlock()
	<-r.done
	return r.host, r.ok, r.err
}

// flush sends the queued claims, at most max per statement, until none
// is left.
func (c *claimer) flush(ctx context.Context) {
	for {
		c.mu.Lock()
		n := min(len(c.queue), c.max)
		if n == 0 {
			c.running = false
			c.queue = nil
			c.mu.Unlock()
			return
		}
		batch := append([]*claimReq(nil), c.queue[:n]...)
		c.queue = c.queue[n:]
		c.mu.Unlock()

		claims := make([]store.Claim, len(batch))
		for i, r := range batch {
			claims[i] = r.c
		}
		hosts, err := c.claim(ctx, claims)
		taken := make(map[claimKey]testum.RunHost, len(hosts))
		for _, h := range hosts {
			taken[claimKey{h.RunID, h.Idx, h.Attempt}] = h
		}
		for _, r := range batch {
			k := claimKey{r.c.Run, r.c.Idx, r.c.Attempt}
			if h, ok := taken[k]; ok && err == nil {
				// A task delivered twice is claimed once: the first in line
				// gets the host, the other finds it taken.
				r.host, r.ok = h, true
				delete(taken, k)
			}
			r.err = err
			close(r.done)
		}
	}
}
