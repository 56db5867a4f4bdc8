package executor

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// runCache keeps recently read runs: a run's spec never changes after it is
// created, and a 1000-host run would otherwise read it 1000 times. The
// cancel flag is re-read separately (progressAcks).
type runCache struct {
	mu   sync.Mutex
	max  int
	runs map[uuid.UUID]cachedRun
}

type cachedRun struct {
	run testum.Run
	at  time.Time
}

const runCacheTTL = 10 * time.Second

func newRunCache(max int) *runCache { return &runCache{max: max, runs: map[uuid.UUID]cachedRun{}} }

func (c *runCache) get(ctx context.Context, st *store.Store, id uuid.UUID) (testum.Run, error) {
	c.mu.Lock()
	if r, ok := c.runs[id]; ok && time.Since(r.at) < runCacheTTL {
		c.mu.Unlock()
		return r.run, nil
	}
	c.mu.Unlock()
	run, err := st.Run(ctx, id)
	if err != nil {
		return run, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.runs) >= c.max {
		for k, v := range c.runs { // evict the expired, or everything when none is
			if time.Since(v.at) >= runCacheTTL {
				delete(c.runs, k)
			}
		}
		if len(c.runs) >= c.max {
			clear(c.runs)
		}
	}
	c.runs[id] = cachedRun{run: run, at: time.Now()}
	return run, nil
}
