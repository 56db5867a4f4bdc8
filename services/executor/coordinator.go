package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// coordinatorPoll is how often a coordinator looks at its run even when no
// event woke it (an event may be lost; a deadline may pass).
const coordinatorPoll = time.Second

// republishAfter is how long a released task may stay unclaimed before the
// coordinator checks that its message still exists.
const republishAfter = 10 * time.Second

// RunCoordinator drives one run: it releases host tasks as parallelism,
// batches and the failure threshold allow, and finishes the run. All its
// state is in PostgreSQL, so another executor can resume it at any point.
type RunCoordinator struct {
	e   *Executor
	msg jetstream.Msg
	run testum.Run
	log *slog.Logger

	wake        chan struct{}
	plan        fanoutPlan
	lastRecheck time.Time
}

// coordinate takes a run message: it becomes the run's coordinator unless a
// live executor already is, and drives the run until it ends. When ctx ends
// (soft stop) it hands the run back for another executor.
func (e *Executor) coordinate(ctx, hardCtx context.Context, msg jetstream.Msg) {
	var rm bus.RunMsg
	if err := json.Unmarshal(msg.Data(), &rm); err != nil {
		e.log.Error("malformed run message dropped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	run, ok, err := e.st.RunCoordinate(ctx, rm.RunID, e.cfg.ID, e.cfg.DeadAfter)
	if err != nil {
		e.log.Warn("taking a run failed; handed back", "run", rm.RunID, "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if !ok {
		// Finished, or a live coordinator holds it (this was a duplicate):
		// the reaper republishes it should that coordinator die.
		_ = msg.Ack()
		return
	}
	plan, err := planFanout(run)
	if err != nil {
		e.log.Error("run has an unusable spec", "run", run.ID, "err", err)
		plan = fanoutPlan{parallelism: max(run.Parallelism, 1)}
	}
	c := &RunCoordinator{e: e, msg: msg, run: run, plan: plan, wake: make(chan struct{}, 1),
		log: e.log.With("run", run.ID, "role", "coordinator")}
	sub, err := e.nc.Subscribe(bus.EventSubject(run.ID), func(*nats.Msg) { c.poke() })
	if err != nil {
		c.log.Warn("event subscription failed; polling only", "err", err)
	} else {
		defer sub.Unsubscribe() //nolint:errcheck
	}
	c.log.Debug("coordinating", "hosts", run.HostCount, "parallelism", plan.parallelism)
	c.loop(ctx, hardCtx)
}

func (c *RunCoordinator) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *RunCoordinator) loop(ctx, hardCtx context.Context) {
	poll := time.NewTicker(coordinatorPoll)
	defer poll.Stop()
	acks := time.NewTicker(c.e.cfg.AckWait / 3)
	defer acks.Stop()
	first := true
	for {
		done, err := c.step(ctx, first)
		first = false
		if err != nil {
			c.log.Warn("coordinator step failed; retrying", "err", err)
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			c.handBack(hardCtx)
			return
		case <-c.wake:
		case <-poll.C:
		case <-acks.C:
			_ = c.msg.InProgress()
		}
	}
}

// step looks at the run once and does what is due. It reports whether the
// run is finished.
func (c *RunCoordinator) step(ctx context.Context, resumed bool) (bool, error) {
	st := c.e.st
	run, err := st.Run(ctx, c.run.ID)
	if err != nil {
		return false, err
	}
	c.run = run
	if run.CoordinatorID != c.e.cfg.ID {
		c.log.Info("another executor took over the run")
		_ = c.msg.Ack()
		return true, nil
	}
	if run.State.Final() {
		_ = c.msg.Ack()
		return true, nil
	}
	p, err := st.RunProgress(ctx, run.ID)
	if err != nil {
		return false, err
	}
	if p.Finished == p.Total {
		return true, c.finish(ctx, p)
	}

	stopping := run.CancelRequested || run.AbortReason != ""
	if !stopping {
		if reason := c.plan.stopReason(run, p, time.Now()); reason != "" {
			if err := st.RunAbort(ctx, run.ID, reason); err != nil {
				return false, err
			}
			c.log.Info("run stops releasing hosts", "reason", reason)
			stopping = true
		}
	}
	if stopping {
		state := testum.HostSkipped
		if run.CancelRequested {
			state = testum.HostCanceled
		}
		ended, err := st.RunHostsEndQueued(ctx, run.ID, state)
		if err != nil {
			return false, err
		}
		c.announceEnded(ctx, ended, state)
		if len(ended) > 0 {
			c.poke()
		}
		return false, nil
	}

	if resumed || time.Since(c.lastRecheck) > republishAfter {
		c.lastRecheck = time.Now()
		if err := c.republishMissing(ctx, resumed); err != nil {
			return false, err
		}
	}

	n := c.plan.releasable(p)
	if n <= 0 {
		return false, nil
	}
	rel, err := st.RunHostsRelease(ctx, run.ID, n)
	if err != nil {
		return false, err
	}
	for _, r := range rel {
		if err := c.publishTask(ctx, r); err != nil {
			// The host stays released and queued; republishMissing retries it.
			c.log.Warn("publishing a task failed", "idx", r.Idx, "err", err)
		}
	}
	return false, nil
}

func (c *RunCoordinator) publishTask(ctx context.Context, r store.Released) error {
	tm := bus.TaskMsg{RunID: c.run.ID, Idx: r.Idx, Attempt: r.Attempt + 1}
	return bus.PublishJSON(ctx, c.e.js, bus.TaskSubject(c.run.ID, r.Idx), tm.MsgID(), tm)
}

// republishMissing re-sends released tasks that are neither claimed nor in
// the stream any more (a publish that failed, a stream that lost them):
// PostgreSQL can rebuild any task.
func (c *RunCoordinator) republishMissing(ctx context.Context, resumed bool) error {
	age := republishAfter
	if resumed {
		age = 0
	}
	waiting, err := c.e.st.RunHostsReleasedWaiting(ctx, c.run.ID, age)
	if err != nil || len(waiting) == 0 {
		return err
	}
	stream, err := c.e.js.Stream(ctx, bus.StreamTasks)
	if err != nil {
		return fmt.Errorf("tasks stream: %w", err)
	}
	for _, r := range waiting {
		_, err := stream.GetLastMsgForSubject(ctx, bus.TaskSubject(c.run.ID, r.Idx))
		if err == nil {
			continue
		}
		if !bus.IsNotFound(err) {
			return fmt.Errorf("looking up task %d: %w", r.Idx, err)
		}
		c.log.Info("republishing a task that is not in the stream", "idx", r.Idx)
		if err := c.publishTask(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// announceEnded publishes status messages for hosts that ended without
// starting (skipped, canceled), so live viewers see them.
func (c *RunCoordinator) announceEnded(ctx context.Context, ended []store.EndedHost, state testum.HostState) {
	for _, h := range ended {
		c.e.publishHostControl(ctx, c.run.ID, h.Idx, h.Name, state, "")
	}
}

// finish records the run's final state and announces it.
func (c *RunCoordinator) finish(ctx context.Context, p store.Progress) error {
	state := testum.RunFailed
	switch {
	case c.run.CancelRequested:
		state = testum.RunCanceled
	case c.run.AbortReason != "":
		state = testum.RunAborted
	case p.OK == p.Total:
		state = testum.RunSucceeded
	}
	run, ok, err := c.e.st.RunFinish(ctx, c.run.ID, state, c.run.AbortReason)
	if err != nil {
		return err
	}
	if ok {
		c.e.publishDone(ctx, run)
		c.log.Info("run finished", "state", state, "hosts", p.Total, "ok", p.OK)
	}
	_ = c.msg.Ack()
	return nil
}

// handBack releases the run on soft stop so another executor resumes it
// right away.
func (c *RunCoordinator) handBack(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.e.st.RunCoordinatorRelease(cctx, c.run.ID, c.e.cfg.ID); err != nil {
		c.log.Warn("releasing the run", "err", err)
	}
	_ = c.msg.Nak()
}

// publishDone ends a run's transcript and announces the run's state.
func (e *Executor) publishDone(ctx context.Context, run testum.Run) {
	m := &nats.Msg{Subject: bus.OutputRunSubject(run.ID), Data: []byte(run.State), Header: nats.Header{}}
	m.Header.Set(bus.HdrType, string(bus.TypeDone))
	m.Header.Set(bus.HdrState, string(run.State))
	m.Header.Set(bus.HdrAt, time.Now().UTC().Format(time.RFC3339Nano))
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := e.js.PublishMsg(pctx, m, jetstream.WithMsgID("done/"+run.ID.String())); err != nil {
		e.log.Warn("publishing run done", "run", run.ID, "err", err)
	}
	e.publishEvent(ctx, busRunEvent(run))
}

// publishHostControl publishes a status (and error) message for a host this
// executor does not run (reaper, skipped, canceled), continuing the host's
// per-host sequence from the last message on its subject.
func (e *Executor) publishHostControl(ctx context.Context, run uuid.UUID, idx int, name string, state testum.HostState, errText string) {
	seq := 0
	if stream, err := e.js.Stream(ctx, bus.StreamOutput); err == nil {
		if last, err := stream.GetLastMsgForSubject(ctx, bus.OutputSubject(run, idx)); err == nil {
			seq, _ = strconv.Atoi(last.Header.Get(bus.HdrSeq))
		}
	}
	pub := func(typ bus.Type, data string) {
		seq++
		m := &nats.Msg{Subject: bus.OutputSubject(run, idx), Data: []byte(data), Header: nats.Header{}}
		m.Header.Set(bus.HdrType, string(typ))
		m.Header.Set(bus.HdrHost, name)
		m.Header.Set(bus.HdrSeq, strconv.Itoa(seq))
		m.Header.Set(bus.HdrState, string(state))
		m.Header.Set(bus.HdrAt, time.Now().UTC().Format(time.RFC3339Nano))
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := e.js.PublishMsg(pctx, m); err != nil {
			e.log.Debug("publishing host status", "run", run, "idx", idx, "err", err)
		}
	}
	if errText != "" {
		pub(bus.TypeError, errText)
	}
	pub(bus.TypeStatus, string(state))
	e.publishEvent(ctx, bus.Event{RunID: run, Kind: "host", Idx: idx, Host: name, State: string(state)})
}

func busRunEvent(run testum.Run) bus.Event {
	return bus.Event{RunID: run.ID, Kind: "run", State: string(run.State)}
}

// fanoutPlan is a run's fan-out controls, parsed once.
type fanoutPlan struct {
	parallelism int
	batch       int // hosts per rolling batch; 0 = no batches
	maxFailures int // failures allowed; -1 = no threshold
	deadline    time.Duration
}

func planFanout(run testum.Run) (fanoutPlan, error) {
	p := fanoutPlan{parallelism: max(run.Spec.Parallelism, run.Parallelism, 1), maxFailures: -1}
	if run.Spec.Batch != "" {
		a, err := testum.ParseAmount(run.Spec.Batch)
		if err != nil {
			return p, fmt.Errorf("batch: %w", err)
		}
		p.batch = max(a.Of(run.HostCount), 1)
	}
	if run.Spec.MaxFailures != "" {
		a, err := testum.ParseAmount(run.Spec.MaxFailures)
		if err != nil {
			return p, fmt.Errorf("max_failures: %w", err)
		}
		p.maxFailures = a.Of(run.HostCount)
	}
	if run.Spec.DeadlineSecs > 0 {
		p.deadline = time.Duration(run.Spec.DeadlineSecs) * time.Second
	}
	return p, nil
}

// releasable is how many more hosts may start now: bounded by parallelism
// and, with rolling batches, only once the previous batch has finished.
func (p fanoutPlan) releasable(pr store.Progress) int {
	n := min(p.parallelism-pr.InFlight, pr.Pending)
	if p.batch > 0 {
		if pr.InFlight > 0 {
			return 0 // the current batch is still going
		}
		n = min(n, p.batch)
	}
	return max(n, 0)
}

// stopReason says why no further host may start, or "".
func (p fanoutPlan) stopReason(run testum.Run, pr store.Progress, now time.Time) string {
	if p.maxFailures >= 0 && pr.Failures > p.maxFailures {
		return fmt.Sprintf("failure threshold crossed: %d hosts failed, at most %d allowed", pr.Failures, p.maxFailures)
	}
	if p.deadline > 0 && run.StartedAt != nil && now.Sub(*run.StartedAt) > p.deadline {
		return fmt.Sprintf("run deadline of %s passed", p.deadline)
	}
	return ""
}
