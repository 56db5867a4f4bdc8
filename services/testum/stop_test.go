package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/testum/testum/libs/secrets"
	"github.com/testum/testum/libs/testenv"
)

// TestIdleServeStopsWithoutWaitingForPullRequests starts an idle `testum
// serve` (a real process, its NATS exposed on loopback), watches the
// executor's JetStream pull requests from a second NATS client, and sends
// SIGTERM as soon as a fresh one is made. The serve must exit 0 without
// waiting for that pull request to expire: had it waited, the server's
// "408 Request Timeout" for the request would reach the watching client
// (which listens on the same inbox) before the process exited. The stop used
// to wait for every open pull request to expire, and loops could start new
// ones after SIGTERM (6–11 s for an idle serve). The embedded server's own
// shutdown may end the request with a 409, which is fine: the request was
// still open when the serve's last step ran.
func TestIdleServeStopsWithoutWaitingForPullRequests(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := ln.Addr().String()
	_ = ln.Close()
	dataDir := t.TempDir()
	p := startProcess(t, map[string]string{
		"DATABASE_URL":       testenv.Postgres(t),
		"TESTUM_DATA_DIR":    dataDir,
		"TESTUM_LISTEN":      "127.0.0.1:0",
		"TESTUM_NATS_LISTEN": natsAddr,
		"TESTUM_LOG_LEVEL":   "warn",
		"ADMIN_USERNAME":     testAdmin,
		"ADMIN_PASSWORD":     testAdminKey,
	}, "serve")
	p.waitURL(t)

	pass, err := os.ReadFile(filepath.Join(dataDir, "nats_password"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("nats://"+natsAddr, nats.UserInfo("testum", strings.TrimSpace(string(pass))),
		nats.MaxReconnects(0))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	var (
		mu      sync.Mutex
		ended   = map[string]string{} // pull request inbox → status the server answered it with
		watched string                // the inbox of the pull request SIGTERM followed
	)
	fresh := make(chan string, 1)
	// Every status or message on an executor inbox: a pull request ending.
	if _, err := nc.Subscribe("_INBOX.>", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := ended[m.Subject]; !ok {
			ended[m.Subject] = m.Header.Get("Status") + " " + m.Header.Get("Description")
		}
	}); err != nil {
		t.Fatal(err)
	}
	// The pull requests themselves (tasks and runs consumers).
	if _, err := nc.Subscribe("$JS.API.CONSUMER.MSG.NEXT.>", func(m *nats.Msg) {
		select {
		case fresh <- m.Reply:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Drop a request seen before the subscriptions were both in place; the
	// next is one made after, with its whole expiry ahead of it.
	select {
	case <-fresh:
	default:
	}
	select {
	case watched = <-fresh:
	case <-time.After(waitLimit):
		t.Fatalf("no pull request seen within %s:\n%s", waitLimit, p.out.String())
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(waitLimit):
		t.Fatalf("serve did not stop within %s of SIGTERM:\n%s", waitLimit, p.out.String())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM:\n%s", code, p.out.String())
	}
	mu.Lock()
	status, answered := ended[watched]
	mu.Unlock()
	// The server's shutdown may answer it (409 Server Shutdown): that only
	// shows it was still open when NATS stopped, after the executor had.
	if answered && strings.HasPrefix(status, "408") {
		t.Fatalf("the stop waited for the pull request open at SIGTERM to end (%s): an idle stop must not wait for its expiry\n%s",
			status, p.out.String())
	}
}

// TestExecutorStoppedMidRunFinishesItsHosts: SIGTERM to an executor process
// that runs hosts (and has pull requests open) lets its running commands
// finish, exits 0, and hands the rest of the run to the other executor:
// every host ends ok, each ran exactly once, none lost.
func TestExecutorStoppedMidRunFinishesItsHosts(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	nats := testenv.NATS(t)
	fernet, _ := secrets.GenerateKey()
	env := map[string]string{
		"DATABASE_URL": testenv.Postgres(t), "NATS_URL": nats.URL, "FERNET_KEY": fernet,
		"SECRET_KEY": "test-secret-key-0123456789abcdef0123456789", "TESTUM_DATA_DIR": t.TempDir(),
		"TESTUM_LOG_LEVEL": "warn", "TESTUM_LISTEN": "127.0.0.1:0", "TESTUM_HEARTBEAT": "300ms",
		"TESTUM_DEAD_AFTER": "5s", "TESTUM_EXECUTOR_SLOTS": "2", "TESTUM_DRAIN_TIMEOUT": "60s",
		"ADMIN_USERNAME": testAdmin, "ADMIN_PASSWORD": testAdminKey,
	}
	gw := startProcess(t, env, "gateway")
	s := &server{URL: gw.waitURL(t)}
	s.login(t)
	stopped := startProcess(t, env, "executor")
	stoppedID := stopped.waitExecutorID(t)
	startProcess(t, env, "executor")

	var ids []int64
	for i := range 8 {
		ids = append(ids, s.createPlatform(t, map[string]any{"name": fmt.Sprintf("st%02d", i), "host": sshd.Addr(170 + i),
			"port": sshd.Port, "username": sshd.PasswordUser.Name, "auth_method": "password", "password": sshd.PasswordUser.Password}))
	}
	marker := filepath.Join(sshd.PasswordUser.Home, fmt.Sprintf("stop-%d-%d", os.Getpid(), time.Now().UnixNano()))
	cmd := fmt.Sprintf(`echo x >> %s-$(echo $SSH_CONNECTION | cut -d' ' -f3); sleep 2; echo done`, marker)
	runID := s.startRun(t, map[string]any{"command": cmd, "timeout": 60, "targets": map[string]any{"platform_ids": ids}})
	deadline := time.Now().Add(waitLimit)
	var held []string
	for len(held) == 0 {
		for _, h := range hostsOf(s.getRun(t, runID)) {
			if val(h.Executor) == stoppedID && h.State == "running" {
				held = append(held, h.Name)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the executor to stop never ran a host")
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	if err := stopped.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped.exited:
	case <-time.After(waitLimit):
		t.Fatalf("the executor did not stop within %s of SIGTERM:\n%s", waitLimit, stopped.out.String())
	}
	if code := stopped.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("the executor exited %d after SIGTERM:\n%s", code, stopped.out.String())
	}
	r := s.waitRun(t, runID)
	for _, h := range hostsOf(r) {
		lines := 0
		if b, err := os.ReadFile(marker + "-" + strings.Split(h.Address, ":")[0]); err == nil {
			lines = strings.Count(string(b), "x")
		}
		if h.State != "ok" || h.Attempt != 1 || lines != 1 {
			t.Errorf("%s: %s attempt %d on %s, ran %d times", h.Name, h.State, h.Attempt, val(h.Executor), lines)
		}
	}
	t.Logf("%d hosts were running on the stopped executor; run %s %+v", len(held), r.State, r.Counts)
}
