package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

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
	lost        bool // another executor took the run over: nothing more is done for it
}

// coordinate takes a run message: it becomes the run's coordinator, waiting
// for the current one first if a live executor holds the run (takeRun), and
// drives the run until it ends. When ctx ends (soft stop) it hands the run
// back for another executor.
func (e *Executor) coordinate(ctx, hardCtx context.Context, msg jetstream.Msg) {
	rm, err := bus.DecodeRun(msg.Data())
	if err != nil {
		e.log.Error("malformed run message dropped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	if !e.holdRun(rm.RunID) {
		// This executor coordinates the run (or waits to) on another message
		// of it, which it keeps: this one is a duplicate.
		_ = msg.Ack()
		return
	}
	defer e.unholdRun(rm.RunID)
	run, ok := e.takeRun(ctx, msg, rm.RunID)
	if !ok {
		return
	}
	plan, err := planFanout(run)
	if err != nil {
		e.log.Error("run has an unusable spec", "run", run.ID, "err", err)
		plan = fanoutPlan{parallelism: max(run.Parallelism, 1)}
	}
	c := &RunCoordinator{e: e, msg: msg, run: run, plan: plan, wake: make(chan struct{}, 1),
		log: e.log.With("run", run.ID, "role", "coordinator")}
	defer e.m.coordinating()()
	// Host events and the run's cancel broadcast wake the coordinator (core
	// NATS: a wake-up lost while nobody listened costs one poll).
	for _, subj := range []string{bus.EventSubject(run.ID), bus.CancelSubject(run.ID)} {
		sub, err := e.nc.Subscribe(subj, func(*nats.Msg) { c.poke() })
		if err != nil {
			c.log.Warn("wake-up subscription failed; polling only", "subject", subj, "err", err)
			continue
		}
		defer sub.Unsubscribe() //nolint:errcheck
	}
	c.log.Debug("coordinating", "hosts", run.HostCount, "parallelism", plan.parallelism)
	c.loop(ctx, hardCtx)
}

// takeRun makes this executor the run's coordinator. While another
// executor that still looks alive holds the run, this one stands by with
// the message (in-progress acks keep it here) and tries again every
// coordinatorPoll: the run is taken over at the first try after the
// holder's liveness expires (DeadAfter after its last heartbeat, by the
// database clock), and the message is acknowledged only once the run is
// final. So a run redelivered early, while its dead coordinator's last
// heartbeat is still fresh, is never dropped.
func (e *Executor) takeRun(ctx context.Context, msg jetstream.Msg, id uuid.UUID) (testum.Run, bool) {
	var poll, acks *time.Ticker
	holder, since := "", time.Time{}
	for {
		run, ok, err := e.st.RunCoordinate(ctx, id, e.cfg.ID, e.cfg.DeadAfter)
		if err == nil && ok {
			if holder != "" {
				e.log.Info("took over the run: its coordinator's liveness expired", "run", id,
					"previous", holder, "dead_after", e.cfg.DeadAfter, "waited", time.Since(since).Round(time.Millisecond))
			}
			return run, true
		}
		if err == nil {
			run, err = e.st.Run(ctx, id)
		}
		switch {
		case testum.CodeOf(err) == testum.CodeNotFound:
			_ = msg.Ack()
			return testum.Run{}, false
		case err != nil:
			e.log.Warn("taking a run failed; handed back", "run", id, "err", err)
			_ = msg.NakWithDelay(time.Second)
			return testum.Run{}, false
		case run.State.Final():
			_ = msg.Ack()
			return testum.Run{}, false
		}
		if holder != run.CoordinatorID {
			holder, since = run.CoordinatorID, time.Now()
			e.log.Info("run held by a live coordinator; standing by until it ends or its liveness expires",
				"run", id, "coordinator", holder)
		}
		if poll == nil {
			poll, acks = time.NewTicker(coordinatorPoll), time.NewTicker(e.ackWait/3)
			defer poll.Stop()
			defer acks.Stop()
		}
		select {
		case <-ctx.Done():
			_ = msg.Nak()
			return testum.Run{}, false
		case <-poll.C:
		case <-acks.C:
			_ = msg.InProgress()
		}
	}
}

// holdRun records that this executor coordinates the run, or stands by
// for it; false when it already does on another message.
func (e *Executor) holdRun(id uuid.UUID) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.coordinating[id]; ok {
		return false
	}
	e.coordinating[id] = struct{}{}
	return true
}

func (e *Executor) unholdRun(id uuid.UUID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.coordinating, id)
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
	acks := time.NewTicker(c.e.ackWait / 3)
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

// step looks at the run once and does what is due. It reports whether
// this executor is done with the run: it finished, or it was taken over.
func (c *RunCoordinator) step(ctx context.Context, resumed bool) (bool, error) {
	run, p, err := c.e.st.RunWithProgress(ctx, c.run.ID)
	if err != nil {
		return false, err
	}
	c.run = run
	if run.CoordinatorID != c.e.cfg.ID {
		return c.lose(run.CoordinatorID), nil
	}
	if run.State.Final() {
		_ = c.msg.Ack()
		return true, nil
	}
	return c.advance(ctx, run, p, resumed)
}

// lose stops coordinating a run another executor took over while this one
// looked dead (paused, cut off): the message is the new coordinator's to
// keep or acknowledge, so it is left alone. It says so once.
func (c *RunCoordinator) lose(holder string) bool {
	if !c.lost {
		c.lost = true
		args := []any{}
		if holder != "" {
			args = append(args, "coordinator", holder)
		}
		c.log.Info("another executor took over the run; this one stops coordinating it", args...)
	}
	return true
}

// advance does what the plan says is due for run at progress p, both as
// read at the start of the step: they may be stale by now (the executor
// paused), so every write is fenced by the run's coordinator_id in the
// store, and what is published follows only from writes that took effect.
// A write refused that way ends the coordination.
func (c *RunCoordinator) advance(ctx context.Context, run testum.Run, p store.Progress, resumed bool) (done bool, err error) {
	defer func() {
		if errors.Is(err, store.ErrNotCoordinator) {
			done, err = c.lose(""), nil
		}
	}()
	st, me := c.e.st, c.e.cfg.ID
	next := c.plan.next(run, p, time.Now())
	if next.finish != "" {
		return true, c.finish(ctx, next.finish, p)
	}
	if next.abort != "" {
		if err := st.RunAbort(ctx, run.ID, me, next.abort); err != nil {
			return false, err
		}
		c.log.Info("run stops releasing hosts", "reason", next.abort)
	}
	if next.endQueued != "" {
		ended, err := st.RunHostsEndQueued(ctx, run.ID, me, next.endQueued)
		if err != nil {
			return false, err
		}
		c.announceEnded(ctx, ended, next.endQueued)
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

	if next.release <= 0 {
		return false, nil
	}
	rel, err := st.RunHostsRelease(ctx, run.ID, me, next.release)
	if err != nil {
		return false, err
	}
	if n, err := c.publishTasks(ctx, rel); err != nil {
		c.log.Warn("publishing tasks failed; they are republished later", "unacknowledged", len(rel)-n, "err", err)
	}
	return false, nil
}

// publishInFlight is how many of a release's tasks are published at once:
// each waits for its JetStream acknowledgement, and one after the other a
// release of hundreds of hosts would take as many round trips.
const publishInFlight = 64

// publishTasks publishes the tasks of released hosts, up to
// publishInFlight at once, and returns how many were acknowledged. At the
// first failure it starts no more and ends those in flight: the hosts
// stay released and queued, and republishMissing publishes them. Trying
// the rest now would only hold the step (and the run message's in-progress
// acks) for as long again.
func (c *RunCoordinator) publishTasks(ctx context.Context, rel []store.Released) (int, error) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(publishInFlight)
	var published atomic.Int64
	for _, r := range rel {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if gctx.Err() != nil {
				return nil // one failed while this waited for its turn
			}
			if err := c.publishTask(gctx, r); err != nil {
				return fmt.Errorf("task of host %d: %w", r.Idx, err)
			}
			published.Add(1)
			return nil
		})
	}
	err := g.Wait()
	return int(published.Load()), err
}

// publishTask publishes one host task, giving it a third of the ack wait:
// enough to ride out a stream leader election, short enough that the run
// message gets its in-progress ack in time.
func (c *RunCoordinator) publishTask(ctx context.Context, r store.Released) error {
	ctx, cancel := context.WithTimeout(ctx, max(c.e.ackWait/3, time.Second))
	defer cancel()
	return bus.PublishTask(ctx, c.e.pub, bus.TaskMsg{RunID: c.run.ID, Idx: r.Idx, Attempt: r.Attempt + 1})
}

// republishMissing re-sends released tasks that are neither claimed nor in
// the stream any more (a publish that failed, a stream that lost them):
// PostgreSQL can rebuild any task.
func (c *RunCoordinator) republishMissing(ctx context.Context, resumed bool) error {
	age := republishAfter
	if resumed {
		age = 0
	}
	waiting, err := c.e.st.RunHostsReleasedWaiting(ctx, c.run.ID, c.e.cfg.ID, age)
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
		c.e.publishHostControl(ctx, c.run.ID, h.Idx, h.Attempt, h.Name, state, "")
	}
}

// finish records the run's final state and announces it, once every
// host's transcript has ended: a run that reads final (and the gateways'
// WebSockets end at once for a final run whose stream has nothing newer)
// has its whole transcript but done in the stream.
func (c *RunCoordinator) finish(ctx context.Context, state testum.RunState, p store.Progress) error {
	c.e.awaitTranscripts(ctx, c.run.ID, transcriptsWait)
	run, ok, err := c.e.st.RunFinish(ctx, c.run.ID, c.e.cfg.ID, state, c.run.AbortReason)
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

// transcriptsWait bounds how long a run's finish waits for the last
// messages of its hosts.
const transcriptsWait = 30 * time.Second

// awaitTranscripts waits, at most for most, until the transcript of each
// host's recorded attempt ends with a final status. An executor records a
// host's result before it publishes the host's exit and final status (a
// result that was not recorded is never announced), so every host of a
// run can be final in PostgreSQL while those are still on their way, held
// up for seconds by a stream leader election: a run finished then would
// end every WebSocket before that host's end. Hosts ended lost are not
// waited for: the executor that lost them may still send what it had,
// never an end.
func (e *Executor) awaitTranscripts(ctx context.Context, run uuid.UUID, most time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, most)
	defer cancel()
	hosts, err := e.st.RunHosts(ctx, run)
	if err != nil {
		e.log.Warn("finishing the run without checking its hosts' transcripts", "run", run, "err", err)
		return
	}
	ended := map[int]int{} // host index → the attempt whose end is recorded
	for _, h := range hosts {
		if h.Attempt > 0 && h.State != testum.HostLost {
			ended[h.Idx] = h.Attempt
		}
	}
	for i := 1; ; i++ {
		last, err := bus.LastHostMessages(ctx, e.js, run)
		open := len(ended)
		if err == nil {
			idxs := openTranscripts(ended, last)
			open = len(idxs)
			if open > 0 && i%orphanCheckEvery == 0 {
				open -= e.endOrphanedTranscripts(ctx, run, hosts, idxs, ended)
			}
		}
		if open == 0 {
			return
		}
		if !pause(ctx, 200*time.Millisecond) {
			e.log.Warn("finishing the run before every host's transcript ended", "run", run,
				"hosts_open", open, "waited", most, "err", err)
			return
		}
	}
}

// transcriptsOpen counts the hosts whose recorded attempt (ended: host
// index → attempt) has sent messages, the last of which (last: host index
// → its last message) is not a final status. A host without messages has
// nothing to end; one whose last message is of another attempt is not
// this attempt's to end.
func transcriptsOpen(ended map[int]int, last map[int]bus.OutputMsg) int {
	return len(openTranscripts(ended, last))
}

// openTranscripts are the indexes of the hosts transcriptsOpen counts.
func openTranscripts(ended map[int]int, last map[int]bus.OutputMsg) []int {
	var open []int
	for idx, attempt := range ended {
		m, ok := last[idx]
		if ok && m.Attempt == attempt && (m.Type != bus.TypeStatus || !testum.HostState(m.State).Final()) {
			open = append(open, idx)
		}
	}
	return open
}

// orphanCheckEvery is how many of awaitTranscripts' looks (200 ms apart)
// pass between two checks for hosts whose executor died.
const orphanCheckEvery = 5

// endOrphanedTranscripts ends, on their executor's behalf, the open
// transcripts (open: host indexes) of hosts whose executor is no longer
// alive: it died between recording the host's result and announcing it,
// and nobody else would end them. It removes them from ended and returns
// how many it ended.
func (e *Executor) endOrphanedTranscripts(ctx context.Context, run uuid.UUID, hosts []testum.RunHost, open []int, ended map[int]int) int {
	online, err := e.st.ExecutorsOnline(ctx, e.cfg.DeadAfter)
	if err != nil {
		return 0
	}
	alive := make(map[string]bool, len(online))
	for _, x := range online {
		alive[x.ID] = true
	}
	byIdx := make(map[int]testum.RunHost, len(hosts))
	for _, h := range hosts {
		byIdx[h.Idx] = h
	}
	n := 0
	for _, idx := range open {
		h, ok := byIdx[idx]
		if !ok || alive[h.ExecutorID] {
			continue
		}
		e.log.Info("ending the transcript of a host whose executor died after recording its result",
			"run", run, "idx", idx, "executor", h.ExecutorID, "state", h.State)
		e.publishHostControl(ctx, run, idx, h.Attempt, h.Name, h.State, "")
		delete(ended, idx)
		n++
	}
	return n
}

// publishDone ends a run's transcript and announces the run's state.
func (e *Executor) publishDone(ctx context.Context, run testum.Run) {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.output.PublishOutput(pctx, doneMsg(run, time.Now())); err != nil {
		e.log.Warn("publishing run done", "run", run.ID, "err", err)
	}
	e.publishEvent(bus.Event{RunID: run.ID, Kind: bus.EventRun, State: string(run.State)})
	if err := bus.PublishRunFinal(e.nc, run.ID); err != nil {
		e.log.Debug("announcing the run's end to WebSockets; they re-check", "run", run.ID, "err", err)
	}
}

// doneMsg ends a run's transcript.
func doneMsg(run testum.Run, at time.Time) bus.OutputMsg {
	return bus.OutputMsg{Run: run.ID, Idx: bus.RunLevel, Type: bus.TypeDone, State: string(run.State), At: at, Data: []byte(run.State)}
}

// publishHostControl publishes a status (and error) message for a host this
// executor does not run (reaper, skipped, canceled), continuing the host's
// per-host sequence. attempt is the host's starts so far: a host never
// claimed (0) has published nothing, so its sequence starts at 0 without a
// look at the stream; any other continues from the last message on its
// subject.
func (e *Executor) publishHostControl(ctx context.Context, run uuid.UUID, idx, attempt int, name string, state testum.HostState, errText string) {
	seq := 0
	if attempt > 0 {
		seq = e.lastSeq(ctx, run, idx)
	}
	for _, m := range hostControlMsgs(run, idx, name, state, errText, seq, time.Now()) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := e.output.PublishOutput(pctx, m); err != nil {
			e.log.Debug("publishing host status", "run", run, "idx", idx, "err", err)
		}
		cancel()
	}
	e.publishEvent(bus.Event{RunID: run, Kind: bus.EventHost, Idx: idx, Host: name, State: string(state)})
	e.m.hostEnded(state)
}

// lastOutputSeq is the sequence of the last message on a host's output
// subject, 0 when there is none (or it cannot be read).
func (e *Executor) lastOutputSeq(ctx context.Context, run uuid.UUID, idx int) int {
	stream, err := e.js.Stream(ctx, bus.StreamOutput)
	if err != nil {
		return 0
	}
	last, err := stream.GetLastMsgForSubject(ctx, bus.OutputSubject(run, idx))
	if err != nil {
		return 0
	}
	m, err := bus.DecodeOutput(last.Subject, last.Header, last.Data)
	if err != nil {
		return 0
	}
	return m.Seq
}

// hostControlMsgs are the messages that announce a host's state (after its
// error, if any) on behalf of no attempt, continuing the host's sequence
// after last.
func hostControlMsgs(run uuid.UUID, idx int, name string, state testum.HostState, errText string, last int, at time.Time) []bus.OutputMsg {
	var out []bus.OutputMsg
	add := func(typ bus.Type, data string) {
		last++
		out = append(out, bus.OutputMsg{Run: run, Idx: idx, Type: typ, Host: name, Seq: last,
			State: string(state), At: at, Data: []byte(data)})
	}
	if errText != "" {
		add(bus.TypeError, errText)
	}
	add(bus.TypeStatus, string(state))
	return out
}
