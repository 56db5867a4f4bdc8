package executor

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// fakeClaims takes every queued host of a fake table once, and blocks the
// first statement until the test lets it go.
type fakeClaims struct {
	mu      sync.Mutex
	taken   map[hostKey]bool
	calls   [][]store.Claim
	entered chan struct{}
	gate    chan struct{}
	fail    error
	poison  int // a statement naming this host fails (0: none)
}

func (f *fakeClaims) claim(_ context.Context, claims []store.Claim) ([]testum.RunHost, error) {
	f.mu.Lock()
	first := len(f.calls) == 0
	f.calls = append(f.calls, claims)
	f.mu.Unlock()
	if first && f.gate != nil {
		close(f.entered)
		<-f.gate
	}
	if f.fail != nil {
		return nil, f.fail
	}
	for _, c := range claims {
		if f.poison != 0 && c.Idx == f.poison {
			return nil, errors.New("row refused")
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []testum.RunHost
	for _, c := range claims {
		k := hostKey{c.Run, c.Idx, c.Attempt}
		if !f.taken[k] {
			f.taken[k] = true
			out = append(out, testum.RunHost{RunID: c.Run, Idx: c.Idx, Attempt: c.Attempt})
		}
	}
	return out, nil
}

// TestClaimerBatchesWhileInFlight: claims arriving while a statement is in
// flight go together in the next; each host is claimed by exactly one
// caller, a duplicate delivery included; an error reaches every caller of
// its statement.
func TestClaimerBatchesWhileInFlight(t *testing.T) {
	f := &fakeClaims{taken: map[hostKey]bool{}, entered: make(chan struct{}), gate: make(chan struct{})}
	c := &groupCommit[hostKey, store.Claim, testum.RunHost]{send: f.claim, max: 100, timeout: time.Minute,
		reqKey: func(c store.Claim) hostKey { return hostKey{c.Run, c.Idx, c.Attempt} }, resKey: rowKey}
	run := uuid.New()
	type result struct {
		idx int
		ok  bool
		err error
	}
	results := make(chan result, 12)
	claim := func(idx int) {
		_, ok, err := c.do(context.Background(), store.Claim{Run: run, Idx: idx, Attempt: 1})
		results <- result{idx, ok, err}
	}
	go claim(0)
	<-f.entered // the first statement is in flight, alone
	for i := 1; i <= 10; i++ {
		go claim(i)
	}
	go claim(5) // host 5 delivered twice
	for i := 0; ; i++ {
		c.mu.Lock()
		n := len(c.queue)
		c.mu.Unlock()
		if n == 11 {
			break
		}
		if i > 1e7 {
			t.Fatal("claims never queued")
		}
		runtime.Gosched()
	}
	close(f.gate)
	oks := map[int]int{}
	for range 12 {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.ok {
			oks[r.idx]++
		}
	}
	for i := 0; i <= 10; i++ {
		if oks[i] != 1 {
			t.Errorf("host %d claimed %d times", i, oks[i])
		}
	}
	if len(f.calls) != 2 || len(f.calls[0]) != 1 || len(f.calls[1]) != 11 {
		t.Errorf("statements: %d, sizes %v; want the first alone and the 11 that waited together", len(f.calls), sizes(f.calls))
	}

	f.fail = errors.New("database gone")
	if _, ok, err := c.do(context.Background(), store.Claim{Run: run, Idx: 11, Attempt: 1}); err == nil || ok {
		t.Errorf("claim during a failure: ok %v err %v", ok, err)
	}
}

// TestGroupCommitAloneAfterFailure: with alone set, a statement that
// fails is sent again request by request, so that a row the database
// refuses fails only its own request.
func TestGroupCommitAloneAfterFailure(t *testing.T) {
	f := &fakeClaims{taken: map[hostKey]bool{}, entered: make(chan struct{}), gate: make(chan struct{}), poison: 3}
	c := &groupCommit[hostKey, store.Claim, testum.RunHost]{send: f.claim, max: 100, timeout: time.Minute,
		alone:  func(err error) bool { return err.Error() == "row refused" },
		reqKey: func(c store.Claim) hostKey { return hostKey{c.Run, c.Idx, c.Attempt} }, resKey: rowKey}
	run := uuid.New()
	errs := make([]error, 6)
	oks := make([]bool, 6)
	var wg sync.WaitGroup
	claim := func(idx int) {
		defer wg.Done()
		_, oks[idx], errs[idx] = c.do(context.Background(), store.Claim{Run: run, Idx: idx, Attempt: 1})
	}
	wg.Add(6)
	go claim(0)
	<-f.entered
	for i := 1; i < 6; i++ {
		go claim(i)
	}
	for i := 0; ; i++ {
		c.mu.Lock()
		n := len(c.queue)
		c.mu.Unlock()
		if n == 5 {
			break
		}
		if i > 1e7 {
			t.Fatal("requests never queued")
		}
		runtime.Gosched()
	}
	close(f.gate)
	wg.Wait()
	for i := range 6 {
		if want := i != 3; oks[i] != want || (errs[i] == nil) != want {
			t.Errorf("request %d: ok %v err %v; want only request 3 to fail", i, oks[i], errs[i])
		}
	}
}

func sizes(calls [][]store.Claim) []int {
	out := make([]int, len(calls))
	for i, c := range calls {
		out[i] = len(c)
	}
	return out
}
