package main

import "testing"

// TestDeploymentRunsOnEveryProcess: the harness itself: a run through one
// gateway reaches hosts through both executors; either gateway reports it.
func TestDeploymentRunsOnEveryProcess(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 2, 2, map[string]string{"TESTUM_EXECUTOR_SLOTS": "2"})
	m := newMarkers(t, d.SSHD)
	ids := d.Fleet(t, "d", 6, 900)
	id := d.Gateways[0].startRun(t, map[string]any{"command": m.Ran() + "; " + m.Gate() + "; echo hi",
		"targets": map[string]any{"platform_ids": ids}, "timeout": 120})
	m.WaitStarted(t, 3) // more than one executor's 2 slots
	m.Open(t)
	f := &follower{t: t, id: id, next: func(int) *server { return d.Gateways[1].server }}
	f.Follow()
	r := d.Gateways[1].waitRun(t, id)
	execs := map[string]bool{}
	for _, h := range hostsOf(r) {
		execs[val(h.Executor)] = true
		if h.State != "ok" || m.Count(h.Address) != 1 {
			t.Errorf("%s: %s, ran %d times", h.Name, h.State, m.Count(h.Address))
		}
	}
	if len(execs) != 2 {
		t.Errorf("hosts ran on %v, want both executors", execs)
	}
	if out := hostOutput(f.Msgs, "stdout"); len(out) != 6 {
		t.Errorf("output of %d hosts: %v", len(out), out)
	}
}
