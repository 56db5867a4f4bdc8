package executor

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// perRun keeps what the hosts of a run share and what does not change while
// it runs: the run and its spec, its secret env, the credentials its hosts
// log in with. A 1000-host run would otherwise read and decrypt each of them
// 1000 times. Hosts that miss at once wait for the one read in flight;
// failed reads are not kept. Entries expire after ttl and the next read of
// any key drops every expired one, so a secret stays at most until the
// executor's next host starts; there are at most max.
type perRun[K comparable, V any] struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[K]*perRunEntry[V]
}

type perRunEntry[V any] struct {
	ready chan struct{} // closed once v and err are set
	v     V
	err   error
	at    time.Time
}

const runCacheTTL = 10 * time.Second

func newPerRun[K comparable, V any](max int) *perRun[K, V] {
	return &perRun[K, V]{ttl: runCacheTTL, max: max, now: time.Now, entries: map[K]*perRunEntry[V]{}}
}

// get returns the value of key, reading it with load when it is not kept.
func (c *perRun[K, V]) get(ctx context.Context, key K, load func(context.Context) (V, error)) (V, error) {
	c.mu.Lock()
	now := c.now()
	for k, e := range c.entries {
		if isReady(e) && now.Sub(e.at) >= c.ttl {
			delete(c.entries, k)
		}
	}
	e, ok := c.entries[key]
	if !ok {
		e = &perRunEntry[V]{ready: make(chan struct{}), at: now}
		if len(c.entries) < c.max {
			c.entries[key] = e
		}
		c.mu.Unlock()
		e.v, e.err = load(ctx)
		close(e.ready)
		if e.err != nil {
			c.mu.Lock()
			if c.entries[key] == e {
				delete(c.entries, key)
			}
			c.mu.Unlock()
		}
		return e.v, e.err
	}
	c.mu.Unlock()
	select {
	case <-e.ready:
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
	if e.err != nil {
		// The read this one waited for failed: read again rather than share
		// another caller's error (its context may have ended, not ours).
		return load(ctx)
	}
	return e.v, nil
}

func isReady[V any](e *perRunEntry[V]) bool {
	select {
	case <-e.ready:
		return true
	default:
		return false
	}
}

// runCache keeps recently read runs: a run's spec never changes after it is
// created. The cancel flag is re-read separately (progressAcks).
type runCache struct {
	c *perRun[uuid.UUID, testum.Run]
}

func newRunCache(max int) *runCache { return &runCache{c: newPerRun[uuid.UUID, testum.Run](max)} }

func (r *runCache) get(ctx context.Context, st *store.Store, id uuid.UUID) (testum.Run, error) {
	return r.c.get(ctx, id, func(ctx context.Context) (testum.Run, error) { return st.Run(ctx, id) })
}
