package executor

import (
	"fmt"
	"time"

	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

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

// fanoutStep is what a coordinator does with its run next; at most one of
// finish, endQueued and release applies.
type fanoutStep struct {
	finish    testum.RunState  // every host ended: the run ends in this state
	abort     string           // a newly crossed limit: record it, then end the hosts not started
	endQueued testum.HostState // end the hosts not started yet in this state
	release   int              // start this many more hosts
}

// next decides the coordinator's next step from the run and its hosts'
// progress at time now. Once the run is stopping (canceled, or a limit
// crossed) no host starts any more and those not started end: canceled
// on request, skipped on a limit.
func (p fanoutPlan) next(run testum.Run, pr store.Progress, now time.Time) fanoutStep {
	if pr.Finished == pr.Total {
		return fanoutStep{finish: runOutcome(run, pr)}
	}
	var s fanoutStep
	if !run.CancelRequested && run.AbortReason == "" {
		s.abort = p.stopReason(run, pr, now)
	}
	switch {
	case run.CancelRequested:
		s.endQueued = testum.HostCanceled
	case run.AbortReason != "" || s.abort != "":
		s.endQueued = testum.HostSkipped
	default:
		s.release = p.releasable(pr)
	}
	return s
}

// runOutcome is the final state of a run whose hosts have all ended.
func runOutcome(run testum.Run, pr store.Progress) testum.RunState {
	switch {
	case run.CancelRequested:
		return testum.RunCanceled
	case run.AbortReason != "":
		return testum.RunAborted
	case pr.OK == pr.Total:
		return testum.RunSucceeded
	}
	return testum.RunFailed
}
