package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/testum/testum/libs/api/apitest"
	apiclient "github.com/testum/testum/libs/api/client"
)

// TestPostgresRestartedDuringARun: PostgreSQL restarts (a fast shutdown
// that ends every connection) while hosts of a run hold at the gate and
// the rest of the run waits for a slot: the run finishes, every host ran
// once and is ok, both gateways answer again, and a run started afterwards
// works.
func TestPostgresRestartedDuringARun(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 2, 2, nil)
	m := newMarkers(t, d.SSHD)
	ids := d.Fleet(t, "pgr", 12, 940)
	id := d.Gateways[0].startRun(t, map[string]any{"command": m.Ran() + "; " + m.Gate() + "; echo hi",
		"targets": map[string]any{"platform_ids": ids}, "parallelism": 6, "timeout": 120})
	m.WaitStarted(t, 6)
	probe := d.probeAPI(t, "/api/runs/"+id)
	start := time.Now()
	d.restartPostgres(t)
	t.Logf("PostgreSQL restarted in %s; the gateways answered meanwhile: %v", time.Since(start).Round(time.Millisecond), probe.stop())
	d.gatewaysAnswer(t, id)
	m.Open(t)
	r := d.Gateways[1].waitRun(t, id)
	t.Logf("run final %s after the restart (recovery bound %s)", time.Since(start).Round(time.Millisecond), d.Bound(t))
	checkEveryHostOKOnce(t, d, m, r, len(ids))
	d.runAfterwards(t, ids)
}

// TestPostgresStoppedPastTheDeadAfter: PostgreSQL is down for longer than
// the executors' dead-after while every host of a run holds at the gate,
// and the hosts finish while it is down. Meanwhile API calls answer a 503
// with a code, not a hang nor a 500. Once PostgreSQL is back no executor
// is taken for dead because the database could not hear it: every host is
// ok, each ran once, the run finishes, both gateways and both executors
// answer again, and a new run works.
func TestPostgresStoppedPastTheDeadAfter(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 2, 2, nil)
	m := newMarkers(t, d.SSHD)
	ids := d.Fleet(t, "pgs", 8, 960)
	id := d.Gateways[0].startRun(t, map[string]any{"command": m.Ran() + "; " + m.Gate() + "; echo hi; " + m.Finished(),
		"targets": map[string]any{"platform_ids": ids}, "timeout": 120})
	m.WaitStarted(t, len(ids))

	d.stopPostgres(t)
	start := time.Now()
	for i, g := range d.Gateways {
		checkUnavailable(t, g.server, "GET", "/api/runs/"+id, nil)
		checkUnavailable(t, g.server, "POST", "/api/runs", map[string]any{"command": "true",
			"targets": map[string]any{"platform_ids": ids[:1]}})
		checkUnavailable(t, g.server, "GET", "/readyz", nil)
		t.Logf("gateway %d asked while PostgreSQL was down", i)
	}
	m.Open(t)
	m.WaitFinished(t, len(ids)) // every command ended with nowhere to record it
	// Outlast the dead-after as the executors count it: enough failed
	// heartbeats that their last recorded one is older than DEAD_AFTER.
	for _, e := range d.Executors {
		e.waitHeartbeatsFailed(t, d, 3)
	}
	down := time.Since(start)
	d.startPostgres(t)
	t.Logf("PostgreSQL was down for %s (dead-after %s)", down.Round(time.Millisecond), d.env["TESTUM_DEAD_AFTER"])
	d.gatewaysAnswer(t, id)
	r := d.Gateways[1].waitRun(t, id)
	t.Logf("run final %s after PostgreSQL came back (recovery bound %s)", time.Since(start).Round(time.Millisecond)-down.Round(time.Millisecond), d.Bound(t))
	checkEveryHostOKOnce(t, d, m, r, len(ids))
	// Each output was archived and streamed with nowhere to record it; the
	// record now names it, and either gateway serves it.
	for _, h := range hostsOf(r) {
		g := d.Gateways[h.Idx%len(d.Gateways)]
		status, log := call(t, "GET", fmt.Sprintf("%s/api/runs/%s/hosts/%d/log", g.URL, id, h.Idx), nil, nil)
		if status != http.StatusOK || string(log) != "hi\n" || h.OutputBytes != 3 {
			t.Errorf("%s: log %d %q, output_bytes %d, want \"hi\\n\"", h.Name, status, log, h.OutputBytes)
		}
	}
	d.waitExecutorsOnline(t)
	for _, e := range d.Executors {
		if strings.Contains(e.proc.out.String(), "host lost with its executor") {
			t.Errorf("executor %s: the reaper took its hosts for lost:\n%s", e.ID, e.proc.out.String())
		}
	}
	d.runAfterwards(t, ids)
}

// checkEveryHostOKOnce checks that the run succeeded with n hosts, each ok
// with exit code 0 on one of the deployment's executors, having run once.
func checkEveryHostOKOnce(t *testing.T, d *deployment, m *markers, r apiclient.Run, n int) {
	t.Helper()
	execs := map[string]bool{}
	for _, e := range d.Executors {
		execs[e.ID] = true
	}
	if r.State != "succeeded" {
		t.Errorf("run %s, want succeeded: %+v", r.State, r.Counts)
	}
	hosts := hostsOf(r)
	if len(hosts) != n {
		t.Errorf("%d hosts, want %d", len(hosts), n)
	}
	for _, h := range hosts {
		if h.State != "ok" || val(h.ExitCode) != 0 || m.Count(h.Address) != 1 || !execs[val(h.Executor)] {
			t.Errorf("%s: %s (exit %d, %q) on executor %q, ran %d times", h.Name, h.State, val(h.ExitCode), val(h.Error),
				val(h.Executor), m.Count(h.Address))
		}
	}
}

// runAfterwards starts a run on the same hosts through the second gateway
// and checks that every host ran it once and is ok.
func (d *deployment) runAfterwards(t *testing.T, ids []int64) {
	t.Helper()
	m := newMarkers(t, d.SSHD)
	id := d.Gateways[1].startRun(t, map[string]any{"command": m.Ran() + "; echo after",
		"targets": map[string]any{"platform_ids": ids}, "timeout": 60})
	checkEveryHostOKOnce(t, d, m, d.Gateways[0].waitRun(t, id), len(ids))
}

// gatewaysAnswer waits until every gateway serves the run again once
// PostgreSQL is back. A request on a connection that broke with the
// restart may still answer 503 (and the client retries); anything else
// fails the test.
func (d *deployment) gatewaysAnswer(t *testing.T, id string) {
	t.Helper()
	for i, g := range d.Gateways {
		unavailable := 0
		for {
			status, body := call(t, "GET", g.URL+"/api/runs/"+id, nil, nil)
			if status == http.StatusOK {
				break
			}
			if status != http.StatusServiceUnavailable || unavailable >= 50 {
				t.Fatalf("gateway %d after PostgreSQL came back: GET run: %d %s (after %d answers 503)", i, status, body, unavailable)
			}
			unavailable++
			time.Sleep(100 * time.Millisecond) // as a client retries after a 503
		}
		if unavailable > 0 {
			t.Logf("gateway %d answered 503 %d times once PostgreSQL was back", i, unavailable)
		}
	}
}

// apiProbe asks every gateway for one path, again and again, until stop;
// each answer must be 200 or a 503 with code unavailable, within a hang
// guard.
type apiProbe struct {
	done   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	counts map[int]int
}

func (d *deployment) probeAPI(t *testing.T, path string) *apiProbe {
	t.Helper()
	p := &apiProbe{done: make(chan struct{}), counts: map[int]int{}}
	client := &http.Client{Transport: contractClient.Transport, Timeout: 30 * time.Second}
	for _, g := range d.Gateways {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			reported := false
			for range 5000 { // bounded: about 100 s at the pace below
				select {
				case <-p.done:
					return
				default:
				}
				req, err := http.NewRequestWithContext(apitest.WithTest(context.Background(), t), "GET", g.URL+path, nil)
				if err != nil {
					t.Error(err)
					return
				}
				req.Header.Set("Authorization", "Bearer "+tokenFor(g.URL))
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("GET %s while PostgreSQL restarts: %v", path, err)
					return
				}
				data, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close() // read to the end
				var e apiclient.Error
				if resp.StatusCode != http.StatusOK && (resp.StatusCode != http.StatusServiceUnavailable ||
					json.Unmarshal(data, &e) != nil || e.Code != apiclient.ErrorCodeUnavailable) && !reported {
					reported = true // once per gateway; the counts tell the rest
					t.Errorf("GET %s while PostgreSQL restarts: %d %s, want 200 or 503 with code unavailable", path, resp.StatusCode, data)
				}
				p.mu.Lock()
				p.counts[resp.StatusCode]++
				p.mu.Unlock()
				time.Sleep(20 * time.Millisecond) // the pace of the probe
			}
		}()
	}
	t.Cleanup(func() { p.stop() })
	return p
}

// stop ends the probe and returns how many answers of each status it got.
func (p *apiProbe) stop() map[int]int {
	select {
	case <-p.done:
	default:
		close(p.done)
	}
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.counts)
}

// checkUnavailable sends a request while PostgreSQL is down and checks
// that it answers, within a hang guard, 503 with a JSON error and code.
func checkUnavailable(t *testing.T, s *server, method, path string, body any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = jsonBody(t, body)
	}
	ctx, cancel := context.WithTimeout(apitest.WithTest(context.Background(), t), waitLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tokenFor(s.URL))
	start := time.Now()
	resp, err := contractClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s while PostgreSQL is down: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var e apiclient.Error
	if resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(data, &e) != nil ||
		e.Code != apiclient.ErrorCodeUnavailable || e.Error == "" {
		t.Errorf("%s %s while PostgreSQL is down: %d %s, want 503 with code unavailable", method, path, resp.StatusCode, data)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("%s %s while PostgreSQL is down: 503 without Retry-After", method, path)
	}
	t.Logf("%s %s while PostgreSQL is down: %d in %s", method, path, resp.StatusCode, time.Since(start).Round(time.Millisecond))
}

// waitExecutorsOnline waits until the gateway lists every executor online.
func (d *deployment) waitExecutorsOnline(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		var list []struct {
			ID string `json:"id"`
		}
		status, body := call(t, "GET", d.Gateways[0].URL+"/api/executors", nil, &list)
		online := map[string]bool{}
		for _, e := range list {
			online[e.ID] = true
		}
		missing := 0
		for _, e := range d.Executors {
			if !online[e.ID] {
				missing++
			}
		}
		if status == http.StatusOK && missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("executors online after PostgreSQL came back: %d %s", status, body)
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronisation
	}
}

// waitHeartbeatsFailed waits until the executor has logged enough failed
// heartbeats since PostgreSQL stopped to span DEAD_AFTER plus extra
// heartbeat intervals.
func (e *executorProc) waitHeartbeatsFailed(t *testing.T, d *deployment, extra int) {
	t.Helper()
	every, err1 := time.ParseDuration(d.env["TESTUM_HEARTBEAT"])
	dead, err2 := time.ParseDuration(d.env["TESTUM_DEAD_AFTER"])
	if err1 != nil || err2 != nil {
		t.Fatalf("heartbeat settings: %v %v", err1, err2)
	}
	want := int(dead/every) + extra
	deadline := time.Now().Add(waitLimit)
	for strings.Count(e.proc.out.String(), "heartbeat failed") < want {
		if time.Now().After(deadline) {
			t.Fatalf("executor %s: %d failed heartbeats within %s, want %d", e.ID,
				strings.Count(e.proc.out.String(), "heartbeat failed"), waitLimit, want)
		}
		time.Sleep(50 * time.Millisecond) // polling the executor's log
	}
}
