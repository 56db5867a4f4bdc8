package executor

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestPerRun(max int) (*perRun[string, int], *fakeClock) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := newPerRun[string, int](max)
	c.now = clk.now
	return c, clk
}

// The hosts of a run that start together read the shared value once.
func TestPerRunReadsOncePerRun(t *testing.T) {
	c, _ := newTestPerRun(8)
	var loads atomic.Int32
	release, started := make(chan struct{}), make(chan struct{})
	load := func(context.Context) (int, error) {
		if loads.Add(1) == 1 {
			close(started)
		}
		<-release
		return 42, nil
	}
	const hosts = 50
	var wg sync.WaitGroup
	got := make([]int, hosts)
	errs := make([]error, hosts)
	first := make(chan struct{})
	go func() {
		defer close(first)
		_, _ = c.get(context.Background(), "run-a", load) // the read in flight
	}()
	<-started
	for i := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = c.get(context.Background(), "run-a", load)
		}()
	}
	close(release)
	wg.Wait()
	<-first
	for i := range hosts {
		if got[i] != 42 || errs[i] != nil {
			t.Fatalf("host %d: %d, %v", i, got[i], errs[i])
		}
	}
	if n := loads.Load(); n != 1 {
		t.Fatalf("%d reads, want 1", n)
	}
	if v, _ := c.get(context.Background(), "run-b", func(context.Context) (int, error) { return 7, nil }); v != 7 {
		t.Fatalf("another run got %d", v)
	}
}

func TestPerRunExpiryAndErrors(t *testing.T) {
	c, clk := newTestPerRun(2)
	calls := 0
	value := func(v int, err error) func(context.Context) (int, error) {
		return func(context.Context) (int, error) { calls++; return v, err }
	}
	ctx := context.Background()
	if _, err := c.get(ctx, "r", value(0, errors.New("database away"))); err == nil {
		t.Fatal("the error was not returned")
	}
	if v, err := c.get(ctx, "r", value(1, nil)); v != 1 || err != nil {
		t.Fatalf("after a failed read: %d, %v (an error was kept)", v, err)
	}
	if v, _ := c.get(ctx, "r", value(2, nil)); v != 1 || calls != 2 {
		t.Fatalf("within the ttl: %d after %d reads", v, calls)
	}
	clk.add(runCacheTTL)
	if v, _ := c.get(ctx, "r", value(3, nil)); v != 3 {
		t.Fatalf("after the ttl: %d", v)
	}
	// An expired entry is dropped by the next read of any run, so no secret
	// stays in memory long after its run stopped needing it.
	clk.add(runCacheTTL)
	_, _ = c.get(ctx, "other", value(9, nil))
	c.mu.Lock()
	_, kept := c.entries["r"]
	c.mu.Unlock()
	if kept {
		t.Fatal("an expired entry was kept")
	}
	// Past max, values are read but not kept.
	_, _ = c.get(ctx, "third", value(5, nil))
	before := calls
	if v, _ := c.get(ctx, "fourth", value(6, nil)); v != 6 {
		t.Fatalf("over max: %d", v)
	}
	if v, _ := c.get(ctx, "fourth", value(7, nil)); v != 7 || calls != before+2 {
		t.Fatalf("over max kept a value: %d", v)
	}
}
