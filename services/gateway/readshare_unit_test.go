package gateway

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A read in flight serves nobody who came after it began: they share the
// next one, which starts when it ends.
func TestReadShareServesLaterRequestsFromALaterRead(t *testing.T) {
	s := &readShare[string]{timeout: time.Minute}
	var reads atomic.Int32
	started, release := make(chan struct{}, 4), make(chan struct{})
	read := func(context.Context) ([]byte, error) {
		n := reads.Add(1)
		started <- struct{}{}
		if n == 1 {
			<-release
		}
		return []byte(strconv.Itoa(int(n))), nil
	}
	ctx := context.Background()
	got := make([]string, 4)
	var wg sync.WaitGroup
	call := func(i int) {
		defer wg.Done()
		b, err := s.do(ctx, "run", read)
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
		got[i] = string(b)
	}
	wg.Add(1)
	go call(0)
	<-started // the first read is in flight
	for i := 1; i < 4; i++ {
		wg.Add(1)
		go call(i)
	}
	waitFor(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		next := s.keys["run"].next
		return next != nil && next.waiters == 3
	})
	close(release)
	wg.Wait()
	if want := []string{"1", "2", "2", "2"}; !slices.Equal(got, want) {
		t.Fatalf("answers %v, want %v (the later requests share the second read)", got, want)
	}
	if n := reads.Load(); n != 2 {
		t.Fatalf("%d reads for 4 requests, want 2", n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.keys) != 0 {
		t.Fatalf("keys left after every read ended: %v", s.keys)
	}
}

// A lone request reads at once; other keys never wait for it.
func TestReadShareKeysAreIndependent(t *testing.T) {
	s := &readShare[string]{timeout: time.Minute}
	block := make(chan struct{})
	defer close(block)
	go func() {
		_, _ = s.do(context.Background(), "slow", func(context.Context) ([]byte, error) {
			<-block
			return nil, nil
		})
	}()
	b, err := s.do(context.Background(), "fast", func(context.Context) ([]byte, error) { return []byte("x"), nil })
	if err != nil || string(b) != "x" {
		t.Fatalf("got %q %v", b, err)
	}
}

// A request that gives up gets its context's error; the read goes on for
// the others and is not canceled with it. Errors and panics are shared
// answers, not crashes.
func TestReadShareCancelErrorsAndPanics(t *testing.T) {
	s := &readShare[int]{timeout: time.Minute}
	release := make(chan struct{})
	readCtxErr := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.do(ctx, 1, func(rctx context.Context) ([]byte, error) {
			<-release
			readCtxErr <- rctx.Err()
			return []byte("ok"), nil
		})
		done <- err
	}()
	waitFor(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.keys[1] != nil
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled request: %v", err)
	}
	close(release)
	if err := <-readCtxErr; err != nil {
		t.Fatalf("the read saw its first request's cancel: %v", err)
	}

	boom := errors.New("boom")
	if _, err := s.do(context.Background(), 2, func(context.Context) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("error: %v", err)
	}
	if _, err := s.do(context.Background(), 3, func(context.Context) ([]byte, error) { panic("bad") }); err == nil {
		t.Fatal("a panicking read answered no error")
	}
	// The keys are free again after a panic.
	if b, err := s.do(context.Background(), 3, func(context.Context) ([]byte, error) { return []byte("y"), nil }); err != nil || string(b) != "y" {
		t.Fatalf("after a panic: %q %v", b, err)
	}
}

// waitFor waits until cond holds; the deadline is only a hang guard.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within a minute")
		}
		time.Sleep(time.Millisecond)
	}
}
