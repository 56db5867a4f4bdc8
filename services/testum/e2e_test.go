package main

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/testenv"
)

// hostScript answers per host: the host is told apart by the server address
// sshd puts in SSH_CONNECTION.
const hostScript = `ip=$(echo $SSH_CONNECTION | cut -d' ' -f3)
case "$ip" in
  %s) exit 3 ;;
  %s) sleep 30 ;;
  *) echo "hello from $ip"; echo "err $ip" >&2 ;;
esac`

// TestFanOutThroughEveryComponent runs one command on 50 loopback hosts
// through HTTP → gateway → JetStream → executor → OpenSSH → NATS →
// WebSocket, in one run with the failure cases beside them.
func TestFanOutThroughEveryComponent(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)

	pw := sshd.PasswordUser
	var ids []int64
	addr := map[int64]string{}
	for i := range 50 {
		a := sshd.Addr(i)
		id := s.createPlatform(t, map[string]any{
			"name": fmt.Sprintf("web%02d", i), "host": a, "port": sshd.Port,
			"username": pw.Name, "auth_method": "password", "password": pw.Password,
		})
		ids = append(ids, id)
		addr[id] = a
	}
	exitHost, sleepHost := sshd.Addr(50), sshd.Addr(51)
	exitID := s.createPlatform(t, map[string]any{"name": "exits-3", "host": exitHost, "port": sshd.Port,
		"username": pw.Name, "auth_method": "PASSWORD", "password": pw.Password})
	sleepID := s.createPlatform(t, map[string]any{"name": "sleeps", "host": sleepHost, "port": sshd.Port,
		"username": pw.Name, "auth_method": "password", "password": pw.Password})
	closedID := s.createPlatform(t, map[string]any{"name": "closed-port", "host": "127.0.0.1", "port": testenv.ClosedPort(t),
		"username": pw.Name, "auth_method": "password", "password": pw.Password})
	wrongID := s.createPlatform(t, map[string]any{"name": "wrong-password", "host": sshd.Addr(52), "port": sshd.Port,
		"username": pw.Name, "auth_method": "password", "password": "not-" + pw.Password})

	all := append(slices.Clone(ids), exitID, sleepID, closedID, wrongID)
	runID := s.startRun(t, map[string]any{
		"command": fmt.Sprintf(hostScript, exitHost, sleepHost),
		"targets": map[string]any{"platform_ids": all},
		"timeout": 5,
	})
	msgs := s.wsCollect(t, runID, 0, 0)
	run := s.waitRun(t, runID)

	if run.State != "failed" {
		t.Errorf("run state %s, want failed (some hosts failed)", run.State)
	}
	stdout, stderr := hostOutput(msgs, "stdout"), hostOutput(msgs, "stderr")
	byName := map[string]apiclient.RunHost{}
	for _, h := range hostsOf(run) {
		byName[h.Name] = h
	}
	for i, id := range ids {
		name := fmt.Sprintf("web%02d", i)
		h := byName[name]
		if h.State != "ok" || h.ExitCode == nil || *h.ExitCode != 0 {
			t.Errorf("%s: state %s exit %v (%s), want ok 0", name, h.State, h.ExitCode, val(h.Error))
		}
		if want := "hello from " + addr[id] + "\n"; stdout[name] != want {
			t.Errorf("%s stdout %q, want %q", name, stdout[name], want)
		}
		if want := "err " + addr[id] + "\n"; stderr[name] != want {
			t.Errorf("%s stderr %q, want %q", name, stderr[name], want)
		}
	}
	expect := map[string]struct {
		state string
		exit  *int
	}{
		"exits-3":        {"failed", ptr(3)},
		"sleeps":         {"timeout", nil},
		"closed-port":    {"unreachable", nil},
		"wrong-password": {"auth_failed", nil},
	}
	for name, want := range expect {
		h := byName[name]
		if string(h.State) != want.state {
			t.Errorf("%s: state %s (%s), want %s", name, h.State, val(h.Error), want.state)
		}
		if want.exit != nil && (h.ExitCode == nil || *h.ExitCode != *want.exit) {
			t.Errorf("%s: exit code %v, want %d", name, h.ExitCode, *want.exit)
		}
	}
	// The WebSocket saw every host's final state and an exit message.
	final := map[string]string{}
	exits := map[string]*int{}
	for _, m := range msgs {
		if m.Type == "status" {
			final[val(m.Host)] = val(m.State)
		}
		if m.Type == "exit" {
			exits[val(m.Host)] = m.ExitCode
		}
	}
	for name, h := range byName {
		if final[name] != string(h.State) {
			t.Errorf("%s: last WebSocket status %q, want %q", name, final[name], h.State)
		}
	}
	if e := exits["exits-3"]; e == nil || *e != 3 {
		t.Errorf("exit message of exits-3: %v, want 3", e)
	}
	if last := msgs[len(msgs)-1]; last.Type != "done" || val(last.State) != "failed" {
		t.Errorf("last message %+v, want done/failed", last)
	}
	assertNoProcess(t, sshd, sleepHost, "sleep")
}

// TestTimeoutEndsTheRemoteProcess: `sleep 30` with timeout 1 ends timeout
// and leaves no sleep on the host.
func TestTimeoutEndsTheRemoteProcess(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	host := sshd.Addr(7)
	id := s.createPlatform(t, map[string]any{"name": "sleeper", "host": host, "port": sshd.Port,
		"username": sshd.KeyUser.Name, "auth_method": "private_key", "private_key": string(sshd.KeyUser.KeyPEM)})

	task, err := s.api.PlatformRunCommandWithResponse(context.Background(), id,
		apiclient.RunCommandRequest{Command: "sleep 30", Timeout: ptr(1)})
	checkStatus(t, "run_command", err, task.StatusCode(), http.StatusCreated, task.Body)
	if task.JSON201 == nil {
		t.Fatalf("run_command: %s", task.Body)
	}
	run := s.waitRun(t, task.JSON201.TaskId.String())
	if h := (*run.Hosts)[0]; h.State != "timeout" {
		t.Fatalf("state %s (%s), want timeout", h.State, val(h.Error))
	}
	assertNoProcess(t, sshd, host, "sleep")
}

// assertNoProcess fails if a process matching name runs on the host,
// giving the host's sshd a bounded moment to finish the kill it was told.
func assertNoProcess(t *testing.T, sshd *testenv.SSHD, host, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ps, err := sshd.Processes(host)
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, p := range ps {
			if strings.Contains(p.Cmdline, name) {
				left = append(left, fmt.Sprintf("%d %s", p.PID, p.Cmdline))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still runs on %s: %v", name, host, left)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}

// TestWebSocketReplayAndResume: a client that joins after the run ended
// gets everything in order; one that drops mid-run and resumes from its
// last seq misses nothing and gets nothing twice.
func TestWebSocketReplayAndResume(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	var ids []int64
	for i := range 3 {
		ids = append(ids, s.createPlatform(t, map[string]any{"name": fmt.Sprintf("h%d", i), "host": sshd.Addr(20 + i),
			"port": sshd.Port, "username": sshd.PasswordUser.Name, "auth_method": "password", "password": sshd.PasswordUser.Password}))
	}
	runID := s.startRun(t, map[string]any{
		"command": `for i in 1 2 3 4 5 6; do echo "line $i"; echo "oops $i" >&2; sleep 0.2; done`,
		"targets": map[string]any{"platform_ids": ids}, "timeout": 60,
	})
	// Drop after a few messages, resume from the last seq seen.
	first := s.wsCollect(t, runID, 0, 5)
	rest := s.wsCollect(t, runID, first[len(first)-1].Seq, 0)
	resumed := append(first, rest...)
	s.waitRun(t, runID)
	late := s.wsCollect(t, runID, 0, 0)

	if len(late) < 3*(2*6)+1 {
		t.Fatalf("late joiner got %d messages, want at least %d", len(late), 3*12+1)
	}
	for i := 1; i < len(late); i++ {
		if late[i].Seq <= late[i-1].Seq {
			t.Fatalf("late joiner: seq %d after %d: out of order", late[i].Seq, late[i-1].Seq)
		}
	}
	if !slices.EqualFunc(resumed, late, func(a, b apiclient.WSMessage) bool {
		return a.Seq == b.Seq && a.Type == b.Type && val(a.Host) == val(b.Host) && a.Payload == b.Payload
	}) {
		t.Fatalf("resumed stream differs from the full replay:\nresumed %d msgs\nlate    %d msgs", len(resumed), len(late))
	}
	for host, out := range hostOutput(late, "stdout") {
		if want := "line 1\nline 2\nline 3\nline 4\nline 5\nline 6\n"; out != want {
			t.Errorf("%s stdout %q, want %q", host, out, want)
		}
	}
	// Per host, the executor's sequence has no gap.
	next := map[string]int{}
	for _, m := range late {
		if val(m.Host) == "" {
			continue
		}
		if val(m.HostSeq) != next[val(m.Host)]+1 {
			t.Errorf("%s: host_seq %d after %d", val(m.Host), val(m.HostSeq), next[val(m.Host)])
		}
		next[val(m.Host)] = val(m.HostSeq)
	}
}

// TestBadInputIsRefusedCleanly: each bad request gets a 4xx with a JSON
// error and writes nothing.
func TestBadInputIsRefusedCleanly(t *testing.T) {
	t.Parallel()
	s := startServe(t, nil)
	pid := s.createPlatform(t, map[string]any{"name": "ok-host", "host": "127.0.0.1", "port": 22,
		"username": "u", "auth_method": "password", "password": "p"})
	platform := func(over map[string]any) map[string]any {
		m := map[string]any{"name": "p2", "host": "127.0.0.1", "port": 22, "username": "u", "auth_method": "password", "password": "x"}
		for k, v := range over {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	runCmd := fmt.Sprintf("/api/platforms/%d/run_command", pid)
	cases := []struct {
		name, method, path string
		body               any
		status             int
	}{
		{"malformed JSON platform", "POST", "/api/platforms/", `{"name": "x",`, 400},
		{"malformed JSON run", "POST", "/api/runs", `{"command": `, 400},
		{"not an object", "POST", "/api/runs", `[1,2]`, 400},
		{"empty body", "POST", "/api/platforms/", ``, 400},
		{"port out of range", "POST", "/api/platforms/", platform(map[string]any{"port": 70000}), 400},
		{"port zero", "POST", "/api/platforms/", platform(map[string]any{"port": 0}), 400},
		{"host with spaces", "POST", "/api/platforms/", platform(map[string]any{"host": "bad host"}), 400},
		{"no password", "POST", "/api/platforms/", platform(map[string]any{"password": nil}), 400},
		{"unknown auth method", "POST", "/api/platforms/", platform(map[string]any{"auth_method": "kerberos"}), 400},
		{"key that does not parse", "POST", "/api/platforms/", platform(map[string]any{"auth_method": "private_key", "password": nil, "private_key": "not a key"}), 400},
		{"label without =", "POST", "/api/platforms/", platform(map[string]any{"labels": "role"}), 400},
		{"duplicate name", "POST", "/api/platforms/", platform(map[string]any{"name": "ok-host"}), 409},
		{"unknown platform run_command", "POST", "/api/platforms/999999/run_command", map[string]any{"command": "true"}, 404},
		{"unknown platform in run", "POST", "/api/runs", map[string]any{"command": "true", "targets": map[string]any{"platform_ids": []int64{999999}}}, 400},
		{"empty command", "POST", runCmd, map[string]any{"command": "  "}, 400},
		{"missing command", "POST", "/api/runs", map[string]any{"targets": map[string]any{"platform_ids": []int64{pid}}}, 400},
		{"timeout 0", "POST", runCmd, map[string]any{"command": "true", "timeout": 0}, 400},
		{"timeout -1", "POST", runCmd, map[string]any{"command": "true", "timeout": -1}, 400},
		{"empty targets", "POST", "/api/runs", map[string]any{"command": "true", "targets": map[string]any{}}, 400},
		{"parallelism 0", "POST", "/api/runs", map[string]any{"command": "true", "parallelism": 0, "targets": map[string]any{"platform_ids": []int64{pid}}}, 400},
		{"unknown run", "GET", "/api/runs/00000000-0000-0000-0000-000000000000", nil, 404},
		{"not a run id", "GET", "/api/runs/xyz", nil, 404},
		{"unknown platform", "GET", "/api/platforms/424242", nil, 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Raw requests: these bodies and paths are deliberately not what the typed client can send.
			status, body := call(t, tc.method, s.URL+tc.path, tc.body, nil)
			if status != tc.status {
				t.Errorf("status %d, want %d: %s", status, tc.status, body)
			}
			if !strings.HasPrefix(string(body), `{"error":"`) {
				t.Errorf("body %s: want a JSON error", body)
			}
		})
	}
	// Nothing half-written: one platform, no run, no credential beyond its
	// own and testum's identity key pair (made at first start).
	conn, err := pgx.Connect(context.Background(), s.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for table, want := range map[string]int{"platforms": 1, "credentials": 2, "runs": 0, "run_hosts": 0} {
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("%s has %d rows, want %d", table, n, want)
		}
	}
}

// TestHostKeyChangeAndSilentServer: a host key that changes after first
// contact is refused and the command does not run; a server that accepts
// TCP but never speaks SSH ends unreachable instead of hanging.
func TestHostKeyChangeAndSilentServer(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, map[string]string{"TESTUM_CONNECT_TIMEOUT": "2s"})
	host := sshd.Addr(30)
	id := s.createPlatform(t, map[string]any{"name": "rekeyed", "host": host, "port": sshd.Port,
		"username": sshd.PasswordUser.Name, "auth_method": "password", "password": sshd.PasswordUser.Password})
	marker := "/tmp/testum-hostkey-" + fmt.Sprint(time.Now().UnixNano())
	t.Cleanup(func() { _ = exec.Command("rm", "-f", marker).Run() })

	first := s.waitRun(t, s.startRun(t, map[string]any{"command": "true", "targets": map[string]any{"platform_ids": []int64{id}}}))
	if (*first.Hosts)[0].State != "ok" {
		t.Fatalf("first contact: %s (%s)", (*first.Hosts)[0].State, val((*first.Hosts)[0].Error))
	}
	getPlatform := func() apiclient.Platform {
		t.Helper()
		resp, err := s.api.PlatformGetWithResponse(context.Background(), id)
		checkStatus(t, "get platform", err, resp.StatusCode(), http.StatusOK, resp.Body)
		if resp.JSON200 == nil {
			t.Fatalf("get platform: %s", resp.Body)
		}
		return *resp.JSON200
	}
	p := getPlatform()
	if !strings.HasPrefix(p.HostKeyFingerprint, "SHA256:") {
		t.Fatalf("no host key pinned after first contact: %+v", p)
	}

	sshd.RestartWithNewHostKeys(t)
	second := s.waitRun(t, s.startRun(t, map[string]any{"command": "touch " + marker, "targets": map[string]any{"platform_ids": []int64{id}}}))
	if h := (*second.Hosts)[0]; h.State != "hostkey_rejected" {
		t.Fatalf("after the key changed: %s (%s), want hostkey_rejected", h.State, val(h.Error))
	}
	if err := exec.Command("test", "-e", marker).Run(); err == nil {
		t.Fatalf("the command ran although the host key changed")
	}
	p = getPlatform()
	if p.OfferedHostKeyFingerprint == nil || *p.OfferedHostKeyFingerprint == "" || *p.OfferedHostKeyFingerprint == p.HostKeyFingerprint {
		t.Errorf("offered key not recorded for review: %+v", p)
	}

	silent := testenv.SilentServer(t)
	h, port, _ := strings.Cut(silent, ":")
	sid := s.createPlatform(t, map[string]any{"name": "silent", "host": h, "port": atoi(t, port),
		"username": "u", "auth_method": "password", "password": "p"})
	r := s.waitRun(t, s.startRun(t, map[string]any{"command": "true", "targets": map[string]any{"platform_ids": []int64{sid}}}))
	if hs := (*r.Hosts)[0]; hs.State != "unreachable" {
		t.Fatalf("silent server: %s (%s), want unreachable", hs.State, val(hs.Error))
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func ptr[T any](v T) *T { return &v }
