package gateway

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// readShare makes concurrent reads of one key one read. A big run's
// answer (the run and every host) costs the database and the encoder the
// same for every client polling it; at a hundred requests a second during
// a 1000-host run each would otherwise pay for its own.
//
// Unlike a plain single-flight, a request never joins a read that began
// before it arrived: that read may predate a write the client just made
// (its cancel, say). While a read is in flight, the requests that arrive
// wait for the next one, which starts when it ends and serves them all. So
// every answer is at least as fresh as the request, and a lone request
// waits for nothing.
type readShare[K comparable] struct {
	// timeout bounds each read: it runs apart from the requests' contexts
	// (one client leaving must not fail the others).
	timeout time.Duration

	mu   sync.Mutex
	keys map[K]*shareSlot
}

type shareSlot struct {
	next *shareRead // waits for the read in flight to end; nil: none waits
}

type shareRead struct {
	ctx  context.Context // the first request's values, without its cancellation
	read func(context.Context) ([]byte, error)
	done chan struct{}
	b    []byte
	err  error
	// waiters counts the requests served by this read (tests watch it).
	waiters int
}

// do returns read's answer for key, from a read that began after the call.
// Its context ends only the caller's wait.
func (s *readShare[K]) do(ctx context.Context, key K, read func(context.Context) ([]byte, error)) ([]byte, error) {
	s.mu.Lock()
	if s.keys == nil {
		s.keys = map[K]*shareSlot{}
	}
	slot, busy := s.keys[key]
	var r *shareRead
	switch {
	case !busy:
		r = newShareRead(ctx, read)
		s.keys[key] = &shareSlot{}
		go s.run(key, r)
	case slot.next == nil:
		r = newShareRead(ctx, read)
		slot.next = r
	default:
		r = slot.next
	}
	r.waiters++
	s.mu.Unlock()
	select {
	case <-r.done:
		return r.b, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func newShareRead(ctx context.Context, read func(context.Context) ([]byte, error)) *shareRead {
	return &shareRead{ctx: context.WithoutCancel(ctx), read: read, done: make(chan struct{})}
}

// run performs reads of key one after another while requests wait for them.
func (s *readShare[K]) run(key K, r *shareRead) {
	for r != nil {
		r.perform(s.timeout)
		close(r.done)
		s.mu.Lock()
		slot := s.keys[key]
		r, slot.next = slot.next, nil
		if r == nil {
			delete(s.keys, key)
		}
		s.mu.Unlock()
	}
}

// perform reads once; a panic fails this read's requests, not the process.
func (r *shareRead) perform(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(r.ctx, timeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			r.b, r.err = nil, fmt.Errorf("gateway: shared read panicked: %v", p)
		}
	}()
	r.b, r.err = r.read(ctx)
}
