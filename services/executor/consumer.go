package executor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	retry "github.com/sethvargo/go-retry"
	"golang.org/x/sync/errgroup"

	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
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
	return retry.DoValue(ctx, dependencyBackoff(), func(ctx context.Context) (jetstream.Consumer, error) {
		c, err := e.js.Consumer(ctx, stream, name)
		if err != nil {
			e.log.Warn("waiting for consumer", "stream", stream, "consumer", name, "err", err)
			return nil, retry.RetryableError(err)
		}
		return c, nil
	})
}

// consumers finds the task and run consumers and takes the executor's ack
// wait from them, so in-progress acks fit the clock the server keeps
// whatever this process was configured with. bus.EnsureStreams gives both
// the same AckWait; the shorter one is kept should they ever differ.
func (e *Executor) consumers(ctx context.Context) (tasks, runs jetstream.Consumer, err error) {
	if tasks, err = e.consumer(ctx, bus.StreamTasks, bus.ConsumerExecutors); err != nil {
		return nil, nil, err
	}
	if runs, err = e.consumer(ctx, bus.StreamRuns, bus.ConsumerCoordinators); err != nil {
		return nil, nil, err
	}
	e.ackWait = min(tasks.CachedInfo().Config.AckWait, runs.CachedInfo().Config.AckWait)
	if e.ackWait <= 0 {
		return nil, nil, fmt.Errorf("consumers %s and %s have no ack wait", bus.ConsumerExecutors, bus.ConsumerCoordinators)
	}
	return tasks, runs, nil
}

// pullTasks fetches host tasks, never more than there are free session
// slots: the client would otherwise prefetch hundreds, and their ack clock
// would start while they wait.
func (e *Executor) pullTasks(ctx, hardCtx context.Context, cons jetstream.Consumer, wg *sync.WaitGroup) error {
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
func (e *Executor) pullRuns(ctx, hardCtx context.Context, cons jetstream.Consumer, wg *sync.WaitGroup) error {
	tokens := make(chan struct{}, maxCoordinate)
	for range maxCoordinate {
		tokens <- struct{}{}
	}
	err := e.fetchLoop(ctx, cons, tokens, fetchMax, func(msg jetstream.Msg, release func()) {
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
	// Failed pull requests back off; one that ends normally starts the
	// policy afresh.
	backoff := dependencyBackoff()
	wait := func() bool {
		d, _ := backoff.Next() // never stops: it is only capped
		return pause(ctx, d)
	}
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
		if ctx.Err() != nil { // stopped while taking tokens: no new pull request
			for range n {
				release()
			}
			return ctx.Err()
		}
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			for range n {
				release()
			}
			e.log.Warn("fetch failed", "err", err)
			if !wait() {
				return ctx.Err()
			}
			continue
		}
		got, msgs := 0, batch.Messages()
	recv:
		for {
			select {
			case msg, ok := <-msgs:
				if !ok {
					break recv
				}
				got++
				if ctx.Err() != nil {
					_ = msg.Nak()
					release()
					continue
				}
				handle(msg, release)
			case <-ctx.Done():
				// Stopping: do not wait for the pull request to expire
				// (an idle stop would wait up to fetchWait for nothing).
				// Whatever it still brings is handed back (nak) as before.
				go handBack(msgs, n-got, release)
				return ctx.Err()
			}
		}
		for range n - got {
			release()
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			e.log.Warn("pull request ended", "err", err)
			if !wait() {
				return ctx.Err()
			}
			continue
		}
		backoff = dependencyBackoff()
	}
}

// handBack naks what an abandoned pull request still delivers, until it
// ends, and returns the tokens it held (left of them).
func handBack(msgs <-chan jetstream.Msg, left int, release func()) {
	for msg := range msgs {
		_ = msg.Nak()
		release()
		left--
	}
	for range left {
		release()
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
	rh, ok, err := e.claims.do(ctx, store.Claim{Run: tm.RunID, Idx: tm.Idx, Attempt: tm.Attempt})
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
		t.finishEarly(ctx, testum.HostLost, "cannot read the run: "+err.Error())
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
