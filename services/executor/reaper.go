package executor

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/metrics"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// reap runs the reaper every ReapInterval, once across all executors per
// tick. A host running on an executor that stopped heartbeating ends lost
// within DeadAfter + ReapInterval of its last heartbeat (or is requeued when
// its run asked for retries); one still connecting is requeued, since its
// command never started; and a run that no live executor coordinates
// is published again, so no run stays running forever.
//
// The recovery bound (README, "Executor loss"): when an executor dies, its
// runs' messages are redelivered within AckWait (its in-progress acks
// stop), and whoever receives one takes the run over at its first try
// (every coordinatorPoll) after the dead coordinator's liveness expires,
// DeadAfter after its last heartbeat (takeRun); a run whose message is gone
// is republished by the first reaper pass after that expiry. Its hosts end
// lost by the first pass after the same expiry, and the coordinator, woken
// by their events or its poll, finishes the run. So a run whose remaining
// hosts were on the dead executor is final within
//
//	max(AckWait, DeadAfter + ReapInterval) + coordinatorPoll
//
// of the death (36 s at the defaults: max(30 s, 30 s + 5 s) + 1 s), counted
// from the start of the next executor if none was running.
func (e *Executor) reap(ctx context.Context) error {
	t := time.NewTicker(e.cfg.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := e.st.Once(ctx, "reaper", func(*store.Tx) error { return e.reapOnce(ctx) }); err != nil && ctx.Err() == nil {
			e.log.Warn("reaper pass failed", "err", err)
		}
	}
}

func (e *Executor) reapOnce(ctx context.Context) error {
	dead, err := e.st.ExecutorsDeadHolding(ctx, e.cfg.DeadAfter)
	if err != nil {
		return err
	}
	for _, id := range dead {
		// A host still connecting has not started its command: it is queued
		// again (the next attempt runs it elsewhere), not lost. Should the dead
		// executor come back, its claim no longer lets it start the command.
		requeued, err := e.st.RunHostsRequeueUnstarted(ctx, id)
		if err != nil {
			return err
		}
		for _, h := range requeued {
			e.log.Warn("host queued again: its executor stopped responding before the command started",
				"executor", id, "run", h.RunID, "host", h.Name, "attempt", h.Attempt)
			e.m.reaped(metrics.ReapHostRequeued)
			e.publishHostControl(ctx, h.RunID, h.Idx, h.Attempt, h.Name, testum.HostQueued, "")
		}
		lost, err := e.st.RunHostsLoseExecutor(ctx, id)
		if err != nil {
			return err
		}
		for _, h := range lost {
			e.log.Warn("host lost with its executor", "executor", id, "run", h.RunID, "host", h.Name, "attempt", h.Attempt)
			e.m.reaped(metrics.ReapHostLost)
			msg := fmt.Sprintf("executor %s stopped responding; the command may or may not have finished", id)
			e.publishHostControl(ctx, h.RunID, h.Idx, h.Attempt, h.Name, testum.HostLost, msg)
			run, err := e.runs.get(ctx, e.st, h.RunID)
			if err == nil && retriesLost(run) {
				if ok, err := e.st.RunHostRequeue(ctx, h.RunID, h.Idx, h.Attempt); err != nil {
					return err
				} else if ok {
					e.log.Info("lost host requeued for another attempt (retry_lost)", "run", h.RunID, "host", h.Name)
					e.m.reaped(metrics.ReapHostRequeued)
					e.publishHostControl(ctx, h.RunID, h.Idx, h.Attempt, h.Name, testum.HostQueued, "")
				}
			}
		}
	}
	// A run without a live coordinator is published again at once when its
	// message is gone from the stream (deleted at its delivery limit, never
	// published, lost by the stream). While the message is still there it
	// is redelivered within the ack wait of its holder's death and taken
	// over (see takeRun), so it is republished only once the run has gone
	// without a live coordinator for two ack waits: the message is stuck
	// (its delivery-limit advisory was missed), and the run then recovers
	// within DeadAfter + 2*AckWait + ReapInterval of its holder's last
	// heartbeat. For a run whose coordinator died both rules count from
	// that coordinator's liveness, not from the run's creation, so a young
	// run recovers as fast as an old one.
	orphans, err := e.st.RunsOrphaned(ctx, e.cfg.DeadAfter, 2*e.ackWait)
	if err != nil {
		return err
	}
	for _, o := range orphans {
		if !o.Settled {
			present, err := e.runMessagePresent(ctx, o.ID)
			if err != nil {
				return err
			}
			if present {
				continue
			}
		}
		e.log.Info("republishing a run no live executor coordinates", "run", o.ID, "settled", o.Settled)
		if err := bus.PublishRun(ctx, e.pub, o.ID, bus.RunMsgID(o.ID, strconv.FormatInt(time.Now().UnixNano(), 10))); err != nil {
			return err
		}
		e.m.reaped(metrics.ReapRunRepublished)
	}
	return nil
}

// runMessagePresent reports whether a message of the run is still in the
// runs stream (delivered or waiting to be).
func (e *Executor) runMessagePresent(ctx context.Context, run uuid.UUID) (bool, error) {
	stream, err := e.js.Stream(ctx, bus.StreamRuns)
	if err != nil {
		return false, fmt.Errorf("runs stream: %w", err)
	}
	_, err = stream.GetLastMsgForSubject(ctx, bus.RunSubject(run))
	switch {
	case err == nil:
		return true, nil
	case bus.IsNotFound(err):
		return false, nil
	default:
		return false, fmt.Errorf("looking up the message of run %s: %w", run, err)
	}
}

// subscribeAdvisories handles messages that reached MaxDeliver: a task whose
// host never started ends lost (it could not be delivered); a run message
// is dropped and its coordinator cleared, so the reaper republishes it.
func (e *Executor) subscribeAdvisories(ctx context.Context) ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	for _, a := range []struct{ stream, consumer string }{
		{bus.StreamTasks, bus.ConsumerExecutors},
		{bus.StreamRuns, bus.ConsumerCoordinators},
	} {
		s, err := e.nc.QueueSubscribe(bus.MaxDeliveriesAdvisory(a.stream, a.consumer), "testum-executors", func(m *nats.Msg) {
			e.onMaxDeliveries(ctx, m)
		})
		if err != nil {
			return subs, fmt.Errorf("subscribe advisory: %w", err)
		}
		subs = append(subs, s)
	}
	return subs, nil
}

func (e *Executor) onMaxDeliveries(ctx context.Context, m *nats.Msg) {
	adv, err := bus.DecodeMaxDeliveries(m.Data)
	if err != nil {
		return
	}
	stream, err := e.js.Stream(ctx, adv.Stream)
	if err != nil {
		return
	}
	raw, err := stream.GetMsg(ctx, adv.StreamSeq)
	if err != nil {
		return
	}
	switch adv.Stream {
	case bus.StreamTasks:
		if tm, err := bus.DecodeTask(raw.Subject, raw.Data); err == nil {
			msg := "the task could not be delivered to an executor (delivery limit reached)"
			if ok, err := e.st.RunHostEndUnstarted(ctx, tm.RunID, tm.Idx, testum.HostLost, msg); err == nil && ok {
				e.m.reaped(metrics.ReapTaskUndeliverable)
				// A host that cannot be read keeps the lookup (tm.Attempt >= 1).
				h := testum.RunHost{Attempt: tm.Attempt}
				if got, err := e.st.RunHost(ctx, tm.RunID, tm.Idx); err == nil {
					h = got
				}
				e.publishHostControl(ctx, tm.RunID, tm.Idx, h.Attempt, h.Name, testum.HostLost, msg)
			}
		}
	case bus.StreamRuns:
		if rm, err := bus.DecodeRun(raw.Data); err == nil {
			e.log.Warn("run message reached its delivery limit; the reaper will republish it", "run", rm.RunID)
		}
	}
	if err := stream.DeleteMsg(ctx, adv.StreamSeq); err != nil {
		e.log.Debug("deleting undeliverable message", "seq", adv.StreamSeq, "err", err)
	}
}

// retriesLost reports whether a host of run that was lost with its executor
// is queued for another attempt: only when the run asked for it and is not
// being canceled. Otherwise lost is final, since the command may have run.
func retriesLost(run testum.Run) bool { return run.Spec.RetryLost && !run.CancelRequested }
