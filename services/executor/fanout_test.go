package executor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

func TestPlanFanout(t *testing.T) {
	for _, tc := range []struct {
		name    string
		run     testum.Run
		want    fanoutPlan
		wantErr string
	}{
		{"defaults: one at a time, no batches, no threshold", testum.Run{HostCount: 10},
			fanoutPlan{parallelism: 1, maxFailures: -1}, ""},
		{"the spec's parallelism", testum.Run{HostCount: 10, Spec: testum.RunSpec{Parallelism: 4}},
			fanoutPlan{parallelism: 4, maxFailures: -1}, ""},
		{"the run's parallelism when larger", testum.Run{HostCount: 10, Parallelism: 8, Spec: testum.RunSpec{Parallelism: 4}},
			fanoutPlan{parallelism: 8, maxFailures: -1}, ""},
		{"a batch as a count", testum.Run{HostCount: 10, Spec: testum.RunSpec{Batch: "3"}},
			fanoutPlan{parallelism: 1, batch: 3, maxFailures: -1}, ""},
		{"a batch as a percentage rounds up", testum.Run{HostCount: 10, Spec: testum.RunSpec{Batch: "25%"}},
			fanoutPlan{parallelism: 1, batch: 3, maxFailures: -1}, ""},
		{"a batch of 0% is one host", testum.Run{HostCount: 10, Spec: testum.RunSpec{Batch: "0%"}},
			fanoutPlan{parallelism: 1, batch: 1, maxFailures: -1}, ""},
		{"a threshold as a percentage", testum.Run{HostCount: 20, Spec: testum.RunSpec{MaxFailures: "10%"}},
			fanoutPlan{parallelism: 1, maxFailures: 2}, ""},
		{"no failure allowed", testum.Run{HostCount: 20, Spec: testum.RunSpec{MaxFailures: "0"}},
			fanoutPlan{parallelism: 1, maxFailures: 0}, ""},
		{"a deadline", testum.Run{HostCount: 2, Spec: testum.RunSpec{DeadlineSecs: 90}},
			fanoutPlan{parallelism: 1, maxFailures: -1, deadline: 90 * time.Second}, ""},
		{"a bad batch", testum.Run{HostCount: 2, Spec: testum.RunSpec{Batch: "half"}},
			fanoutPlan{parallelism: 1, maxFailures: -1}, "batch"},
		{"a bad threshold", testum.Run{HostCount: 2, Spec: testum.RunSpec{MaxFailures: "150%"}},
			fanoutPlan{parallelism: 1, maxFailures: -1}, "max_failures"},
	} {
		got, err := planFanout(tc.run)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want one about %s", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

func TestFanoutNext(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	started := now.Add(-time.Minute)
	running := testum.Run{State: testum.RunRunning, StartedAt: &started}
	canceled := running
	canceled.CancelRequested = true
	aborted := running
	aborted.AbortReason = "failure threshold crossed"
	par := func(n int) fanoutPlan { return fanoutPlan{parallelism: n, maxFailures: -1} }
	for _, tc := range []struct {
		name string
		plan fanoutPlan
		run  testum.Run
		pr   store.Progress
		want fanoutStep
	}{
		{"the first hosts start up to the parallelism", par(3), running,
			store.Progress{Total: 10, Pending: 10},
			fanoutStep{release: 3}},
		{"a finished host frees its slot", par(3), running,
			store.Progress{Total: 10, Pending: 7, InFlight: 2, Finished: 1, OK: 1},
			fanoutStep{release: 1}},
		{"every slot busy", par(3), running,
			store.Progress{Total: 10, Pending: 5, InFlight: 3, Finished: 2},
			fanoutStep{}},
		{"no more than are pending", par(8), running,
			store.Progress{Total: 10, Pending: 2, InFlight: 1, Finished: 7},
			fanoutStep{release: 2}},
		{"a batch waits for the previous one", fanoutPlan{parallelism: 10, batch: 2, maxFailures: -1}, running,
			store.Progress{Total: 6, Pending: 4, InFlight: 1, Finished: 1},
			fanoutStep{}},
		{"the next batch once the previous ended", fanoutPlan{parallelism: 10, batch: 2, maxFailures: -1}, running,
			store.Progress{Total: 6, Pending: 4, Finished: 2, OK: 2},
			fanoutStep{release: 2}},
		{"a batch is bounded by the parallelism", fanoutPlan{parallelism: 1, batch: 4, maxFailures: -1}, running,
			store.Progress{Total: 6, Pending: 6},
			fanoutStep{release: 1}},
		{"failures up to the threshold go on", fanoutPlan{parallelism: 2, maxFailures: 1}, running,
			store.Progress{Total: 6, Pending: 4, Finished: 2, Failures: 1, OK: 1},
			fanoutStep{release: 2}},
		{"crossing the threshold stops and skips the rest", fanoutPlan{parallelism: 2, maxFailures: 1}, running,
			store.Progress{Total: 6, Pending: 3, InFlight: 1, Finished: 2, Failures: 2},
			fanoutStep{abort: "failure threshold crossed: 2 hosts failed, at most 1 allowed", endQueued: testum.HostSkipped}},
		{"a passed deadline stops and skips the rest", fanoutPlan{parallelism: 2, maxFailures: -1, deadline: 30 * time.Second}, running,
			store.Progress{Total: 6, Pending: 3, InFlight: 2, Finished: 1, OK: 1},
			fanoutStep{abort: "run deadline of 30s passed", endQueued: testum.HostSkipped}},
		{"a deadline not passed yet", fanoutPlan{parallelism: 2, maxFailures: -1, deadline: 2 * time.Minute}, running,
			store.Progress{Total: 6, Pending: 3, InFlight: 2, Finished: 1, OK: 1},
			fanoutStep{}},
		{"an aborted run only skips what did not start", par(2), aborted,
			store.Progress{Total: 6, Pending: 3, InFlight: 1, Finished: 2, Failures: 2},
			fanoutStep{endQueued: testum.HostSkipped}},
		{"a cancel ends what did not start as canceled", par(2), canceled,
			store.Progress{Total: 6, Pending: 4, InFlight: 2},
			fanoutStep{endQueued: testum.HostCanceled}},
		{"a cancel wins over a crossed threshold", fanoutPlan{parallelism: 2, maxFailures: 0}, canceled,
			store.Progress{Total: 6, Pending: 4, Finished: 2, Failures: 2},
			fanoutStep{endQueued: testum.HostCanceled}},
		{"every host ok: succeeded", par(2), running,
			store.Progress{Total: 3, Finished: 3, OK: 3},
			fanoutStep{finish: testum.RunSucceeded}},
		{"a host failed: failed", par(2), running,
			store.Progress{Total: 3, Finished: 3, OK: 2, Failures: 1},
			fanoutStep{finish: testum.RunFailed}},
		{"a lost host is no success", par(2), running,
			store.Progress{Total: 3, Finished: 3, OK: 2},
			fanoutStep{finish: testum.RunFailed}},
		{"all ended after a cancel: canceled", par(2), canceled,
			store.Progress{Total: 3, Finished: 3, OK: 3},
			fanoutStep{finish: testum.RunCanceled}},
		{"all ended after an abort: aborted", par(2), aborted,
			store.Progress{Total: 3, Finished: 3, OK: 1, Failures: 2},
			fanoutStep{finish: testum.RunAborted}},
	} {
		if got := tc.plan.next(tc.run, tc.pr, now); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestRetriesLost(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  testum.Run
		want bool
	}{
		{"lost is final by default", testum.Run{}, false},
		{"retry_lost requeues", testum.Run{Spec: testum.RunSpec{RetryLost: true}}, true},
		{"a canceled run does not retry", testum.Run{Spec: testum.RunSpec{RetryLost: true}, CancelRequested: true}, false},
	} {
		if got := retriesLost(tc.run); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestInterruptedIsCanceledOnlyByRequest(t *testing.T) {
	task := &hostTask{}
	for _, tc := range []struct {
		name   string
		cause  error
		res    *sshx.Result
		want   testum.HostState
		signal string
	}{
		{"a cancel request", errCanceled, &sshx.Result{Signal: "KILL"}, testum.HostCanceled, "KILL"},
		{"the executor's shutdown", errShutdown, nil, testum.HostLost, ""},
		{"the hard stop without a cause", nil, &sshx.Result{}, testum.HostLost, ""},
	} {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(tc.cause)
		oc := task.interrupted(ctx, tc.res)
		if oc.state != tc.want || oc.signal != tc.signal {
			t.Errorf("%s: %+v, want %s", tc.name, oc, tc.want)
		}
	}
}

// A cancel broadcast ends the sessions of its run and of no other.
func TestCancelBroadcastEndsOnlyItsRun(t *testing.T) {
	e := &Executor{active: map[uuid.UUID]map[*hostTask]struct{}{}}
	var runA, runB testum.Run
	runA.ID[0], runB.ID[0] = 1, 2
	causes := map[*hostTask]error{}
	newTask := func(run testum.Run) *hostTask {
		ctx, cancel := context.WithCancelCause(context.Background())
		task := &hostTask{run: run, ctx: ctx, cancelFn: cancel}
		e.register(task)
		return task
	}
	a1, a2, b := newTask(runA), newTask(runA), newTask(runB)
	e.onCancel(bus.EncodeCancel(runA.ID))
	e.onCancel(&nats.Msg{Subject: "testum.ctl.cancel.not-a-run"}) // ignored
	for _, task := range []*hostTask{a1, a2, b} {
		causes[task] = context.Cause(task.ctx)
	}
	if !errors.Is(causes[a1], errCanceled) || !errors.Is(causes[a2], errCanceled) {
		t.Errorf("run A's sessions: %v, %v", causes[a1], causes[a2])
	}
	if causes[b] != nil {
		t.Errorf("run B's session ended: %v", causes[b])
	}
}
