package main

import (
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/testum/testum/libs/secrets"
	"github.com/testum/testum/libs/testenv"
)

// TestServeKilledWithAYoungRunIsTakenOver: kill -9 of a whole testum serve
// right after a run's command started, and a restart on the same data dir,
// NATS and PostgreSQL. The ack wait is shorter than the dead-after, so the
// restarted executor receives the run while the dead coordinator still
// looks alive: it must stand by and take the run over once that liveness
// expires (not drop the message), the host ends lost and its command ran
// exactly once.
func TestServeKilledWithAYoungRunIsTakenOver(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	nats := testenv.NATS(t)
	fernet, err := secrets.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	const (
		heartbeat = 500 * time.Millisecond // also the reaper's interval
		deadAfter = 15 * time.Second       // long enough for the restart to come first on a loaded machine
		ackWait   = 2 * time.Second
	)
	env := map[string]string{
		"DATABASE_URL": testenv.Postgres(t), "NATS_URL": nats.URL, "FERNET_KEY": fernet,
		"SECRET_KEY": "test-secret-key-0123456789abcdef0123456789", "TESTUM_DATA_DIR": t.TempDir(),
		"TESTUM_LOG_LEVEL": "info", "TESTUM_LISTEN": "127.0.0.1:0",
		"TESTUM_HEARTBEAT": heartbeat.String(), "TESTUM_DEAD_AFTER": deadAfter.String(), "TESTUM_ACK_WAIT": ackWait.String(),
		"ADMIN_USERNAME": testAdmin, "ADMIN_PASSWORD": testAdminKey,
	}
	first := startProcess(t, env, "serve")
	s := &server{URL: first.waitURL(t)}
	s.login(t)
	pid := s.createPlatform(t, map[string]any{"name": "young", "host": sshd.Addr(60), "port": sshd.Port,
		"username": sshd.PasswordUser.Name, "auth_method": "password", "password": sshd.PasswordUser.Password})
	marker := filepath.Join(sshd.PasswordUser.Home, fmt.Sprintf("young-%d-%d", os.Getpid(), time.Now().UnixNano()))
	runID := s.startRun(t, map[string]any{"command": "echo x >> " + marker + "; sleep 2", "timeout": 60,
		"targets": map[string]any{"platform_ids": []int64{pid}}})

	// Kill as soon as the command runs on the host.
	deadline := time.Now().Add(waitLimit)
	for {
		r := s.getRun(t, runID)
		_, err := os.Stat(marker)
		if r.State == "running" && len(hostsOf(r)) == 1 && hostsOf(r)[0].State == "running" && err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command never started: run %s %+v", r.State, hostsOf(r))
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()

	second := startProcess(t, env, "serve")
	s2 := &server{URL: second.waitURL(t)}
	s2.login(t)
	// The bound the README states, for these settings; the hang guard is a
	// generous multiple of it.
	bound := max(ackWait, deadAfter+heartbeat) + time.Second
	deadline = killedAt.Add(6 * bound)
	var final bool
	for !final {
		r := s2.getRun(t, runID)
		switch r.State {
		case "succeeded", "failed", "canceled", "aborted":
			final = true
			if h := hostsOf(r)[0]; h.State != "lost" || h.Attempt != 1 || !strings.Contains(val(h.Error), "stopped responding") {
				t.Errorf("host of the killed serve: %s attempt %d (%s), want lost", h.State, h.Attempt, val(h.Error))
			}
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s still %s %v after the kill", runID, r.State, time.Since(killedAt))
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	took := time.Since(killedAt)
	if b, err := os.ReadFile(marker); err != nil || strings.Count(string(b), "x") != 1 {
		t.Errorf("the command ran %d times, want once (%v)", strings.Count(string(b), "x"), err)
	}
	// The mechanism: the restarted executor stood by while the dead
	// coordinator looked alive and took the run over when it expired.
	out := second.out.String()
	var tookOver bool
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "took over the run: its coordinator's liveness expired") && strings.Contains(line, runID) {
			tookOver = true
		}
	}
	if !tookOver {
		t.Errorf("the restarted serve did not take the run over by the liveness rule:\n%s", out)
	}
	t.Logf("run final %v after the kill; stated bound %v", took.Round(10*time.Millisecond), bound)
}

// TestConnectionLostMidCommandEndsLost: the host's sshd session dies after
// the command started (its process is killed on the host): the host ends
// lost, with the reason, not unreachable, since the command did run.
func TestConnectionLostMidCommandEndsLost(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	host := sshd.Addr(61)
	pid := s.createPlatform(t, map[string]any{"name": "dropped", "host": host, "port": sshd.Port,
		"username": sshd.PasswordUser.Name, "auth_method": "password", "password": sshd.PasswordUser.Password})
	marker := filepath.Join(sshd.PasswordUser.Home, fmt.Sprintf("dropped-%d-%d", os.Getpid(), time.Now().UnixNano()))
	runID := s.startRun(t, map[string]any{"command": "echo x >> " + marker + "; sleep 30", "timeout": 60,
		"targets": map[string]any{"platform_ids": []int64{pid}}})

	// Once the command runs, kill the sshd process that serves its session:
	// the nearest sshd above the command.
	deadline := time.Now().Add(waitLimit)
	var sessionPID int
	for sessionPID == 0 {
		r := s.getRun(t, runID)
		if _, err := os.Stat(marker); err == nil && hostsOf(r)[0].State == "running" {
			ps, err := sshd.Processes(host)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ps {
				if strings.Contains(p.Cmdline, "sleep 30") {
					sessionPID = sshdAbove(t, p.PID)
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command never started: %+v", hostsOf(r))
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	if err := syscall.Kill(sessionPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := s.waitRun(t, runID)
	if h := hostsOf(r)[0]; h.State != "lost" || !strings.Contains(val(h.Error), "after the command started") {
		t.Errorf("host whose connection died mid-command: %s (%s), want lost", h.State, val(h.Error))
	}
	// The command itself outlives its session (no PTY): end it.
	ps, _ := sshd.Processes(host)
	for _, p := range ps {
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
}

// sshdAbove is the nearest ancestor of a process that is an sshd (the
// process that serves its session), read from /proc.
func sshdAbove(t *testing.T, pid int) int {
	t.Helper()
	for range 10 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after its ')'.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if pid, err = strconv.Atoi(f[1]); err != nil || pid <= 1 {
			t.Fatalf("/proc stat of an ancestor: %q %v", b, err)
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(string(comm), "sshd") {
			return pid
		}
	}
	t.Fatal("no sshd above the command")
	return 0
}

// TestRolesWaitForPostgreSQLAndNATSAtStart: a gateway, executors and a
// testum serve started while their PostgreSQL and NATS do not answer yet
// wait for each in turn instead of exiting: the gateway and serve listen
// meanwhile (/healthz 200, /readyz 503), a SIGTERM during the wait is a clean exit, and once both answer the
// roles start and a run succeeds.
func TestRolesWaitForPostgreSQLAndNATSAtStart(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	nats := testenv.NATS(t)
	lateNATS := newGatedProxy(t, strings.TrimPrefix(nats.URL, "nats://"))
	pg, err := url.Parse(testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	q := pg.Query()
	sock := ".s.PGSQL." + q.Get("port")
	pgDir := t.TempDir()
	latePG := newLateUnixProxy(t, filepath.Join(pgDir, sock), filepath.Join(q.Get("host"), sock))
	q.Set("host", pgDir)
	pg.RawQuery = q.Encode()
	fernet, err := secrets.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"DATABASE_URL": pg.String(), "NATS_URL": "nats://" + lateNATS.addr(), "FERNET_KEY": fernet,
		"SECRET_KEY": "test-secret-key-0123456789abcdef0123456789", "TESTUM_DATA_DIR": t.TempDir(),
		"TESTUM_LOG_LEVEL": "warn", "TESTUM_LISTEN": "127.0.0.1:0", "TESTUM_HEARTBEAT": "500ms",
		"ADMIN_USERNAME": testAdmin, "ADMIN_PASSWORD": testAdminKey,
	}
	gw := startProcess(t, env, "gateway")
	ex := startProcess(t, env, "executor")
	quitter := startProcess(t, env, "executor")
	serveEnv := maps.Clone(env)
	serveEnv["TESTUM_DATA_DIR"] = t.TempDir()
	serve := startProcess(t, serveEnv, "serve")
	listening := regexp.MustCompile(`listening on (http://\S+),`)
	base := gw.waitOutput(t, listening)[1]
	serveBase := serve.waitOutput(t, listening)[1]
	for _, p := range []*process{gw, ex, quitter, serve} {
		p.waitOutput(t, regexp.MustCompile(`waiting for PostgreSQL`))
	}
	for _, b := range []string{base, serveBase} {
		if code := httpStatus(t, b+"/healthz"); code != http.StatusOK {
			t.Errorf("%s/healthz while waiting: %d, want 200", b, code)
		}
		if code := httpStatus(t, b+"/readyz"); code != http.StatusServiceUnavailable {
			t.Errorf("%s/readyz while waiting for PostgreSQL: %d, want 503", b, code)
		}
	}
	if err := quitter.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-quitter.exited:
		if code := quitter.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("executor stopped while waiting exited %d, want 0:\n%s", code, quitter.out.String())
		}
	case <-time.After(waitLimit):
		t.Fatalf("executor did not stop on SIGTERM while waiting for PostgreSQL")
	}

	latePG.open()
	for _, p := range []*process{gw, ex, serve} {
		p.waitOutput(t, regexp.MustCompile(`waiting for NATS`))
	}
	for _, b := range []string{base, serveBase} {
		if code := httpStatus(t, b+"/readyz"); code != http.StatusServiceUnavailable {
			t.Errorf("%s/readyz while waiting for NATS: %d, want 503", b, code)
		}
	}
	lateNATS.open()
	for _, p := range []*process{gw, serve} {
		b := p.waitOutput(t, listening)[1]
		deadline := time.Now().Add(waitLimit)
		for httpStatus(t, b+"/readyz") != http.StatusOK {
			if time.Now().After(deadline) {
				t.Fatalf("%s/readyz not 200 after PostgreSQL and NATS came:\n%s", b, p.out.String())
			}
			time.Sleep(100 * time.Millisecond) // polling interval
		}
	}
	s := &server{URL: gw.waitURL(t)}
	s.login(t)
	pid := s.createPlatform(t, map[string]any{"name": "late", "host": sshd.Addr(62), "port": sshd.Port,
		"username": sshd.PasswordUser.Name, "auth_method": "password", "password": sshd.PasswordUser.Password})
	r := s.waitRun(t, s.startRun(t, map[string]any{"command": "echo hi", "timeout": 60,
		"targets": map[string]any{"platform_ids": []int64{pid}}}))
	if r.State != "succeeded" || hostsOf(r)[0].State != "ok" {
		t.Errorf("run after the late PostgreSQL and NATS: %s, host %s (%s)", r.State, hostsOf(r)[0].State, val(hostsOf(r)[0].Error))
	}
}

// waitOutput waits for a process to print a line matching re and returns
// the match.
func (p *process) waitOutput(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(p.out.String()); m != nil {
			return m
		}
		time.Sleep(50 * time.Millisecond) // polling the process output
	}
	t.Fatalf("no %q printed:\n%s", re, p.out.String())
	return nil
}

// httpStatus is the status of a GET of u (0 when it cannot be sent).
func httpStatus(t *testing.T, u string) int {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Logf("GET %s: %v", u, err)
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// gatedProxy forwards connections to a dependency that is not there until
// open: a TCP port that accepts nothing before (clients connect, then time
// out waiting for the server to speak), or a unix socket that does not
// exist before.
type gatedProxy struct {
	network, target string // where connections go
	listen          func() (net.Listener, error)
	gate            chan struct{}
	served          chan struct{}
	mu              sync.Mutex
	ln              net.Listener
	closing         bool
	conns           []net.Conn
}

// newGatedProxy is a loopback TCP port forwarding to the TCP address
// target once opened.
func newGatedProxy(t *testing.T, target string) *gatedProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startGatedProxy(t, &gatedProxy{network: "tcp", target: target, ln: ln})
}

// newLateUnixProxy is a unix socket at path, made at open, forwarding to
// the unix socket target.
func newLateUnixProxy(t *testing.T, path, target string) *gatedProxy {
	t.Helper()
	return startGatedProxy(t, &gatedProxy{network: "unix", target: target,
		listen: func() (net.Listener, error) { return net.Listen("unix", path) }})
}

func startGatedProxy(t *testing.T, p *gatedProxy) *gatedProxy {
	t.Helper()
	p.gate, p.served = make(chan struct{}), make(chan struct{})
	go func() { defer close(p.served); p.serve(t) }()
	t.Cleanup(func() {
		p.mu.Lock()
		p.closing = true
		if p.ln != nil {
			_ = p.ln.Close()
		}
		p.mu.Unlock()
		p.open()
		<-p.served
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			_ = c.Close()
		}
	})
	return p
}

func (p *gatedProxy) addr() string { return p.ln.Addr().String() }

func (p *gatedProxy) open() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}

func (p *gatedProxy) serve(t *testing.T) {
	<-p.gate
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return
	}
	if p.ln == nil {
		ln, err := p.listen()
		if err != nil {
			p.mu.Unlock()
			t.Errorf("proxy listen: %v", err)
			return
		}
		p.ln = ln
	}
	ln := p.ln
	p.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout(p.network, p.target, 10*time.Second)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
		go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
	}
}
