package executor

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/testum/testum/libs/bus"
)

const (
	fetchWait     = 2 * time.Second // how long one pull request waits for work
	fetchMax      = 100             // most tasks asked for in one pull request
	fetchLoops    = 4               // pull requests outstanding at once
	maxCoordinate = 1000            // runs one executor coordinates at once
)

// consumer waits until the durable consumer exists (NATS may be
// reconnecting, or another process may still be creating it).
func (e *Executor) consumer(ctx context.Context, stream, name string) (jetstream.Consumer, error) {
	backoff := 100 * time.Millisecond
	for {
		c, err := e.js.Consumer(ctx, stream, name)
		if err == nil {
			return c, nil
		}
		e.log.Warn("waiting for consumer", "stream", stream, "consumer", name, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// pullTasks fetches host tasks, never more than there are free session
// slots: the client would otherwise prefetch hundreds, and their ack clock
// would start while they wait.
func (e *Executor) pullTasks(ctx, hardCtx context.Context, wg *sync.WaitGroup) error {
	cons, err := e.consumer(ctx, bus.StreamTasks, bus.ConsumerExecutors)
	if err != nil {
		return nilIfDone(ctx, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	for range fetchLoops {
		g.Go(func() error {
			return e.fetchLoop(gctx, cons, e.slots, fetchMax, func(msg jetstream.Msg, release func()) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer release()
					e.handleTask(hardCtx, msg)
				}()
			})
		})
	}
	return nilIfDone(ctx, g.Wait())
}

// pullRuns fetches runs to coordinate.
func (e *Executor) pullRuns(ctx, hardCtx context.Context, wg *sync.WaitGroup) error {
	cons, err := e.consumer(ctx, bus.StreamRuns, bus.ConsumerCoordinators)
	if err != nil {
		return nilIfDone(ctx, err)
	}
	tokens := make(chan struct{}, maxCoordinate)
	for range maxCoordinate {
		tokens <- struct{}{}
	}
	err = e.fetchLoop(ctx, cons, tokens, fetchMax, func(msg jetstream.Msg, release func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer release()
			e.coordinate(ctx, hardCtx, msg)
		}()
	})
	return nilIfDone(ctx, err)
}

// fetchLoop takes free tokens, asks for that many messages, hands each to
// handle with a release func that returns its token, and returns unused
// tokens when the pull request ends. Messages that arrive after ctx ended
// are handed back (nak) for another executor.
func (e *Executor) fetchLoop(ctx context.Context, cons jetstream.Consumer, tokens chan struct{}, most int,
	handle func(jetstream.Msg, func())) error {
	release := func() { tokens <- struct{}{} }
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tokens:
		}
		n := 1
	more:
		for n < most {
			select {
			case <-tokens:
				n++
			default:
				break more
			}
		}
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			for range n {
				release()
			}
			e.log.Warn("fetch failed", "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			if ctx.Err() != nil {
				_ = msg.Nak()
				release()
				continue
			}
			handle(msg, release)
		}
		for range n - got {
			release()
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			e.log.Warn("pull request ended", "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
}

// handleTask claims a host in PostgreSQL and runs it. A task whose host was
// already started (a redelivery, a duplicate) is acknowledged and dropped:
// the row, not the message, decides. If its holder died, the reaper ends the
// host lost.
func (e *Executor) handleTask(ctx context.Context, msg jetstream.Msg) {
	tm, err := bus.DecodeTask(msg.Subject(), msg.Data())
	if err != nil {
		e.log.Error("malformed task dropped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	rh, ok, err := e.st.RunHostClaim(ctx, tm.RunID, tm.Idx, tm.Attempt, e.cfg.ID)
	if err != nil {
		e.log.Warn("claim failed; task handed back", "run", tm.RunID, "idx", tm.Idx, "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if !ok {
		e.log.Debug("task not claimable (already started or ended); dropped", "run", tm.RunID, "idx", tm.Idx, "attempt", tm.Attempt)
		_ = msg.Ack()
		return
	}
	run, err := e.runs.get(ctx, e.st, tm.RunID)
	if err != nil {
		// The host is ours now: it must end somewhere, never stay connecting.
		t := &hostTask{e: e, msg: msg, host: rh, attempt: tm.Attempt}
		t.run.ID = tm.RunID
		t.finishEarly(ctx, "lost", "cannot read the run: "+err.Error())
		return
	}
	t := newHostTask(e, msg, run, rh, tm.Attempt)
	t.execute(ctx)
}

func nilIfDone(ctx context.Context, err error) error {
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		return nil
	}
	return err
}
