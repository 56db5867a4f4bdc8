//go:build bench

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/secrets"
	"github.com/testum/testum/libs/testenv"
)

// procResult holds what the separate-process benchmarks measured.
type procResult struct {
	sessions int           // concurrent sessions held by one executor
	idleRSS  int64         // the executor's RSS before them, bytes
	peakHWM  int64         // its peak RSS while they ran, bytes
	ramp     time.Duration // POST → every session running on the host

	scaleN   int
	one, two []time.Duration // the same run on one executor, then on two
	split    map[string]int  // hosts per executor, last two-executor run
}

func (r procResult) perSession() float64 {
	return float64(r.peakHWM-r.idleRSS) / float64(r.sessions)
}

// processes measures executors as separate OS processes: a `testum gateway`
// and `testum executor`s against one NATS server and one PostgreSQL, like
// production. One executor runs the scale-out run reps times (which also
// warms it up), then holds `sessions` concurrent sessions while its RSS is
// watched; then a second executor joins and the scale-out run is repeated.
func (e *benchEnv) processes(t *testing.T, sessions, scaleN, reps int) procResult {
	env := splitRolesEnv(t, "1024")
	gw := startProcess(t, env, "gateway")
	s := &server{URL: gw.waitURL(t)}
	s.login(t)
	exA := startProcess(t, env, "executor")
	exA.waitExecutorID(t)

	var ids []int64
	for i := range max(sessions, scaleN) {
		ids = append(ids, s.createPlatform(t, map[string]any{"name": fmt.Sprintf("p%04d", i), "host": e.sshd.Addr(i),
			"port": e.port, "username": e.user, "auth_method": "private_key", "private_key": string(e.sshd.KeyUser.KeyPEM)}))
	}
	// First contact pins the host keys, outside the timings.
	if _, err := runOn(t, s, ids[:scaleN], "echo ok", "ok\n"); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	r := procResult{sessions: sessions, scaleN: scaleN}
	for range reps {
		start := time.Now()
		if _, err := runOn(t, s, ids[:scaleN], "echo ok", "ok\n"); err != nil {
			t.Fatalf("one executor: %v", err)
		}
		r.one = append(r.one, time.Since(start))
	}

	r.idleRSS, r.peakHWM, r.ramp = holdSessions(t, s, exA, ids[:sessions])

	exB := startProcess(t, env, "executor")
	exB.waitExecutorID(t)
	for range reps {
		start := time.Now()
		run, err := runOn(t, s, ids[:scaleN], "echo ok", "ok\n")
		if err != nil {
			t.Fatalf("two executors: %v", err)
		}
		r.two = append(r.two, time.Since(start))
		r.split = map[string]int{}
		for _, h := range hostsOf(run) {
			r.split[val(h.Executor)]++
		}
	}
	if len(r.split) != 2 {
		t.Fatalf("the two-executor run ran on %d executors: %v", len(r.split), r.split)
	}
	return r
}

// holdSessions starts a long sleep on every host, waits until the run has
// every host running and the sshd has every sleep process, reads the
// executor's peak RSS, then cancels the run. The peak is reset just before
// (clear_refs 5), so it covers only this run.
func holdSessions(t *testing.T, s *server, ex *process, ids []int64) (idle, peak int64, ramp time.Duration) {
	pid := ex.cmd.Process.Pid
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Fatalf("resetting the executor's peak RSS: %v", err)
	}
	idle = procStatus(t, pid, "VmRSS")
	// A duration no other process sleeps, to count our sessions on the host.
	marker := fmt.Sprintf("300.%d", os.Getpid()%9973+1)
	start := time.Now()
	runID := s.startRun(t, map[string]any{"command": "sleep " + marker, "parallelism": len(ids), "timeout": 600,
		"targets": map[string]any{"platform_ids": ids}})
	deadline := start.Add(5 * time.Minute)
	for {
		var r apiclient.Run
		mustCall(t, http.StatusOK, "GET", s.URL+"/api/runs/"+runID, nil, &r)
		if (*r.Counts)["running"] == len(ids) && countProcesses("sleep", marker) == len(ids) {
			ramp = time.Since(start)
			break
		}
		if r.State != "queued" && r.State != "running" {
			t.Fatalf("memory run ended %s before all sessions ran: %+v", r.State, r.Counts)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not all %d sessions running after 5 minutes: %+v, %d sleeps on the host",
				len(ids), r.Counts, countProcesses("sleep", marker))
		}
		time.Sleep(200 * time.Millisecond) // polling interval
	}
	peak = procStatus(t, pid, "VmHWM")
	mustCall(t, http.StatusAccepted, "POST", s.URL+"/api/runs/"+runID+"/cancel", nil, nil)
	if r := s.waitRun(t, runID); r.State != "canceled" {
		t.Fatalf("memory run ended %s after cancel: %+v", r.State, r.Counts)
	}
	// Cancel ends the remote processes too.
	for deadline := time.Now().Add(waitLimit); countProcesses("sleep", marker) > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d sleeps still on the host after the cancel", countProcesses("sleep", marker))
		}
		time.Sleep(200 * time.Millisecond) // polling interval
	}
	return idle, peak, ramp
}

// procStatus reads a "kB" field of /proc/PID/status, in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == field {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("/proc/%d/status %s: %q", pid, field, v)
			}
			return kb << 10
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// countProcesses counts processes whose command line is exactly argv.
func countProcesses(argv ...string) int {
	want := strings.Join(argv, "\x00") + "\x00"
	paths, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	n := 0
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil && string(b) == want {
			n++
		}
	}
	return n
}

// splitRolesEnv is the environment of a gateway and executors run as
// separate processes on a NATS server and a database of their own, with
// slots executor slots each. Connection reuse is off: every run pays every
// handshake, as the fan-out figures and the peers do, and a joining
// executor has no kept connections to favour it.
func splitRolesEnv(t *testing.T, slots string) map[string]string {
	t.Helper()
	nats := testenv.NATS(t)
	fernet, err := secrets.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"DATABASE_URL": testenv.Postgres(t), "NATS_URL": nats.URL, "FERNET_KEY": fernet,
		"SECRET_KEY": "bench-secret-key-0123456789abcdef0123456789", "TESTUM_DATA_DIR": t.TempDir(),
		"TESTUM_LOG_LEVEL": "error", "TESTUM_LISTEN": "127.0.0.1:0",
		"TESTUM_EXECUTOR_SLOTS": slots, "TESTUM_MAX_HANDSHAKES": "64", "TESTUM_CONNECT_TIMEOUT": "30s",
		"TESTUM_CONN_IDLE": "0",
		"ADMIN_USERNAME":   testAdmin, "ADMIN_PASSWORD": testAdminKey,
	}
}
