package main

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/testum/testum/libs/api"
	"github.com/testum/testum/libs/secrets"
	"github.com/testum/testum/libs/testenv"
)

// waitURL waits for a process to print the URL it serves.
func (p *process) waitURL(t *testing.T) string {
	t.Helper()
	select {
	case u := <-p.out.found:
		return u
	case <-time.After(waitLimit):
		t.Fatalf("no URL printed within %s:\n%s", waitLimit, p.out.String())
	}
	return ""
}

// TestTwoExecutorProcessesShareARun: two executor processes on one NATS
// server both take hosts of one run; the gateway is a third process.
func TestTwoExecutorProcessesShareARun(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	nats := testenv.NATS(t)
	fernet, err := secrets.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"DATABASE_URL":      testenv.Postgres(t),
		"NATS_URL":          nats.URL,
		"FERNET_KEY":        fernet,
		"SECRET_KEY":        "test-secret-key-0123456789abcdef0123456789",
		"TESTUM_DATA_DIR":   t.TempDir(),
		"TESTUM_LOG_LEVEL":  "warn",
		"TESTUM_LISTEN":     "127.0.0.1:0",
		"TESTUM_HEARTBEAT":  "500ms",
		"TESTUM_DEAD_AFTER": "5s",
		// Few slots each, so that neither executor can hold the whole run.
		"TESTUM_EXECUTOR_SLOTS": "4",
		"ADMIN_USERNAME":        testAdmin,
		"ADMIN_PASSWORD":        testAdminKey,
	}
	gw := startProcess(t, env, "gateway")
	s := &server{URL: gw.waitURL(t)}
	s.login(t)
	startProcess(t, env, "executor")
	startProcess(t, env, "executor")

	var ids []int64
	for i := range 16 {
		ids = append(ids, s.createPlatform(t, map[string]any{"name": fmt.Sprintf("n%02d", i), "host": sshd.Addr(100 + i),
			"port": sshd.Port, "username": sshd.PasswordUser.Name, "auth_method": "password", "password": sshd.PasswordUser.Password}))
	}
	run := s.waitRun(t, s.startRun(t, map[string]any{
		"command": "sleep 0.5; echo $SSH_CONNECTION", "targets": map[string]any{"platform_ids": ids}, "timeout": 60,
	}))
	executors := map[string]int{}
	for _, h := range run.Hosts {
		if h.State != "ok" {
			t.Errorf("%s: %s (%s)", h.Name, h.State, h.Error)
		}
		executors[h.Executor]++
	}
	if len(executors) != 2 {
		t.Fatalf("hosts ran on %d executors (%v), want both", len(executors), executors)
	}
}

// TestServeListensOnlyOnItsHTTPAddress: testum serve with its defaults (a
// private PostgreSQL on a unix socket, NATS in-process) opens exactly one
// listening socket, the HTTP one.
func TestServeListensOnlyOnItsHTTPAddress(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("ss"); err != nil {
		t.Fatal("ss not found: apt-get install iproute2")
	}
	dir, err := os.MkdirTemp("", "testum-serve-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The private PostgreSQL runs as an unprivileged user, who must be able
	// to reach its directory.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, map[string]string{"TESTUM_DATA_DIR": dir, "TESTUM_LISTEN": "127.0.0.1:0",
		"ADMIN_USERNAME": testAdmin, "ADMIN_PASSWORD": testAdminKey}, "serve")
	u, err := url.Parse(p.waitURL(t))
	if err != nil {
		t.Fatal(err)
	}
	s := &server{URL: u.String()}
	s.login(t)
	s.createPlatform(t, map[string]any{"name": "x", "host": "127.0.0.1", "username": "u", "password": "p"})
	var ps []api.Platform
	mustCall(t, 200, "GET", s.URL+"/api/platforms/", nil, &ps)
	if len(ps) != 1 {
		t.Fatalf("platforms: %+v", ps)
	}

	out, err := exec.Command("ss", "-H", "-l", "-t", "-u", "-n", "-p").CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v\n%s", err, out)
	}
	pid := "pid=" + strconv.Itoa(p.cmd.Process.Pid) + ","
	var mine []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, pid) {
			mine = append(mine, strings.Join(strings.Fields(line), " "))
		}
	}
	if len(mine) != 1 || !strings.Contains(mine[0], " "+u.Host+" ") {
		t.Fatalf("testum serve listens on %v, want only %s", mine, u.Host)
	}
}
