package main

// The multi-process harness of the cluster tests: a real 3-node nats-server
// cluster, a private PostgreSQL that can be restarted, gateways and
// executors as separate testum processes, and host-side markers that count
// how often each host ran a command. The tests built on it kill, pause and
// restart every part and check that no run, no host and no output line is
// lost and that no command runs twice.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/testum/testum/libs/api/apitest"
	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/pgcluster"
	"github.com/testum/testum/libs/secrets"
	"github.com/testum/testum/libs/testenv"
)

// deployment is testum as an operator scales it out: every role its own
// process, each with a data dir of its own, on one JetStream cluster and
// one PostgreSQL, logs in the JetStream object store.
type deployment struct {
	NATS *testenv.NATSCluster
	PG   *pgcluster.Cluster
	SSHD *testenv.SSHD
	env  map[string]string

	Gateways  []*gatewayProc
	Executors []*executorProc
}

// gatewayProc is one gateway process and a logged-in client of it.
type gatewayProc struct {
	*server
	proc *process
}

// executorProc is one executor process and the id it registered as.
type executorProc struct {
	proc *process
	ID   string
}

// deploymentSettings are the intervals of every process of a deployment:
// short, so that the recovery bounds are seconds, not minutes.
var deploymentSettings = map[string]string{
	"TESTUM_HEARTBEAT":       "500ms",
	"TESTUM_DEAD_AFTER":      "3s",
	"TESTUM_ACK_WAIT":        "5s",
	"TESTUM_CONNECT_TIMEOUT": "15s",
	"TESTUM_DRAIN_TIMEOUT":   "5s",
	"TESTUM_EXECUTOR_SLOTS":  "32",
}

// startDeployment starts the cluster, PostgreSQL, sshd, then gateways and
// executors processes; env overrides deploymentSettings for all of them.
func startDeployment(t *testing.T, gateways, executors int, env map[string]string) *deployment {
	t.Helper()
	d := &deployment{NATS: testenv.StartNATSCluster(t), PG: testenv.NewPostgresCluster(t), SSHD: testenv.StartSSHD(t)}
	d.NATS.WaitJetStream(t)
	fernet, err := secrets.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	d.env = map[string]string{
		"DATABASE_URL":     d.PG.URL("testum"),
		"NATS_URL":         d.NATS.URL(),
		"FERNET_KEY":       fernet,
		"SECRET_KEY":       "test-secret-key-0123456789abcdef0123456789",
		"TESTUM_LOG_STORE": "nats",
		"TESTUM_LOG_LEVEL": "warn",
		"TESTUM_LISTEN":    "127.0.0.1:0",
		"ADMIN_USERNAME":   testAdmin,
		"ADMIN_PASSWORD":   testAdminKey,
	}
	maps.Copy(d.env, deploymentSettings)
	maps.Copy(d.env, env)
	for range gateways {
		d.StartGateway(t)
	}
	for range executors {
		d.StartExecutor(t)
	}
	return d
}

// processEnv is the deployment's environment with a data dir of its own.
func (d *deployment) processEnv(t *testing.T) map[string]string {
	env := maps.Clone(d.env)
	env["TESTUM_DATA_DIR"] = t.TempDir()
	return env
}

// StartGateway starts one more gateway process and logs in to it.
func (d *deployment) StartGateway(t *testing.T) *gatewayProc {
	t.Helper()
	p := startProcess(t, d.processEnv(t), "gateway")
	g := &gatewayProc{server: &server{URL: p.waitURL(t), DB: d.env["DATABASE_URL"], logs: p.out}, proc: p}
	g.login(t)
	g.api = newAPI(t, g.URL)
	d.Gateways = append(d.Gateways, g)
	return g
}

// StartExecutor starts one more executor process and waits for its id.
func (d *deployment) StartExecutor(t *testing.T) *executorProc {
	t.Helper()
	p := startProcess(t, d.processEnv(t), "executor")
	e := &executorProc{proc: p, ID: p.waitExecutorID(t)}
	d.Executors = append(d.Executors, e)
	return e
}

// Fleet registers n platforms on the deployment's sshd, at loopback
// addresses from base on, through the first gateway.
func (d *deployment) Fleet(t *testing.T, prefix string, n, base int) []int64 {
	t.Helper()
	return d.Gateways[0].fleet(t, d.SSHD, prefix, n, base, nil)
}

// JetStream is a JetStream client of the deployment's cluster, closed when
// the test ends.
func (d *deployment) JetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(d.NATS.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// outputState is the transcript stream's state: its consumers, its last
// sequence.
func outputState(t *testing.T, js jetstream.JetStream) jetstream.StreamState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, bus.StreamOutput)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State
}

// Bound is the README's recovery bound for the deployment's settings:
// max(ACK_WAIT, DEAD_AFTER + HEARTBEAT) + 1s. Tests report it beside what
// they measured; they do not assert timing.
func (d *deployment) Bound(t *testing.T) time.Duration {
	t.Helper()
	get := func(k string) time.Duration {
		v, err := time.ParseDuration(d.env[k])
		if err != nil {
			t.Fatalf("%s=%q: %v", k, d.env[k], err)
		}
		return v
	}
	return max(get("TESTUM_ACK_WAIT"), get("TESTUM_DEAD_AFTER")+get("TESTUM_HEARTBEAT")) + time.Second
}

// Kill sends SIGKILL to a testum process and waits until it is gone.
func (p *process) Kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill %d: %v", p.cmd.Process.Pid, err)
	}
	select {
	case <-p.exited:
	case <-time.After(waitLimit):
		t.Fatalf("process %d still there %s after SIGKILL", p.cmd.Process.Pid, waitLimit)
	}
}

// Pause stops a testum process with SIGSTOP; Resume continues it. A paused
// process is resumed at cleanup, so that it can stop.
func (p *process) Pause(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %d: %v", p.cmd.Process.Pid, err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Signal(syscall.SIGCONT) })
}

func (p *process) Resume(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT %d: %v", p.cmd.Process.Pid, err)
	}
}

// markers is a directory on the sshd's hosts in which commands leave
// traces: hostMarkers.Ran() appends a line to the host's file every time a
// command starts, so that Count tells how often a host really ran; Gate()
// holds a command until the test Opens the gate (bounded: 10 minutes).
type markers struct {
	dir string
}

func newMarkers(t *testing.T, sshd *testenv.SSHD) *markers {
	t.Helper()
	u := sshd.PasswordUser
	dir := filepath.Join(u.Home, fmt.Sprintf("marks-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &markers{dir: dir}
}

// hostIP is a shell expression for the loopback address the command's
// session came in on: the platform's address.
const hostIP = `$(echo $SSH_CONNECTION | cut -d' ' -f3)`

// Ran is a shell command that records one start of the command on this host.
func (m *markers) Ran() string { return fmt.Sprintf(`echo x >> %s/ran-%s`, m.dir, hostIP) }

// Gate is a shell command that waits until the test opened the gate.
func (m *markers) Gate() string {
	return fmt.Sprintf(`for i in $(seq 6000); do [ -e %s/open ] && break; sleep 0.1; done`, m.dir)
}

// Open lets every command waiting at the gate go on.
func (m *markers) Open(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(m.dir, "open"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Count is how many times a command started on the host at addr
// ("127.0.0.5" or "127.0.0.5:2222").
func (m *markers) Count(addr string) int {
	ip, _, found := strings.Cut(addr, ":")
	if !found {
		ip = addr
	}
	b, err := os.ReadFile(filepath.Join(m.dir, "ran-"+ip))
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "x")
}

// Started is how many hosts have started a command.
func (m *markers) Started() int {
	names, _ := filepath.Glob(filepath.Join(m.dir, "ran-*"))
	return len(names)
}

// WaitStarted waits until n hosts have started a command.
func (m *markers) WaitStarted(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for m.Started() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d hosts started within %s, want %d", m.Started(), waitLimit, n)
		}
		time.Sleep(50 * time.Millisecond) // polling the hosts' markers
	}
}

// follower reads a run's WebSocket to the end across dropped connections:
// after a drop it connects again, to the gateway next() gives, resuming
// with since = the last seq it got, as the console does. It fails the test
// on a seq that does not increase (a duplicate).
type follower struct {
	t     *testing.T
	id    string
	next  func(drops int) *server
	Msgs  []apiclient.WSMessage
	Drops int
	OnMsg func(n int, m apiclient.WSMessage) // called after each message, from Follow's goroutine
}

// Follow reads until the run's done message; at most 50 reconnections.
func (f *follower) Follow() {
	t := f.t
	t.Helper()
	var last uint64
	for attempt := 0; attempt <= 50; attempt++ {
		s := f.next(f.Drops)
		conn, _, err := websocket.DefaultDialer.Dial(s.wsURL(f.id, last), http.Header{"Origin": {s.URL},
			"Authorization": {"Bearer " + tokenFor(s.URL)}})
		if err != nil {
			f.Drops++
			time.Sleep(200 * time.Millisecond) // between reconnections, as a client backs off
			continue
		}
		done := false
		for !done {
			_ = conn.SetReadDeadline(time.Now().Add(waitLimit))
			_, frame, err := conn.ReadMessage()
			if err != nil {
				f.Drops++
				break
			}
			if msg := apitest.CheckWSMessage(frame); msg != "" {
				t.Errorf("websocket %s: message breaks openapi.yaml: %s", f.id, msg)
			}
			var m apiclient.WSMessage
			if err := json.Unmarshal(frame, &m); err != nil {
				t.Fatalf("websocket %s: %v", f.id, err)
			}
			if m.Seq != 0 && m.Seq <= last {
				t.Errorf("websocket %s: seq %d after %d (a duplicate) after %d drops", f.id, m.Seq, last, f.Drops)
			}
			if m.Seq > last {
				last = m.Seq
			}
			f.Msgs = append(f.Msgs, m)
			if f.OnMsg != nil {
				f.OnMsg(len(f.Msgs), m)
			}
			done = m.Type == "done"
		}
		_ = conn.Close()
		if done {
			return
		}
	}
	t.Fatalf("websocket %s: no done message in 50 connections (%d messages)", f.id, len(f.Msgs))
}

// restartPostgres restarts the deployment's PostgreSQL (a fast shutdown,
// which ends every connection) and waits until it accepts connections.
func (d *deployment) restartPostgres(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := d.PG.Restart(ctx); err != nil {
		t.Fatalf("restart PostgreSQL: %v", err)
	}
}

// stopPostgres stops the deployment's PostgreSQL (a fast shutdown);
// startPostgres starts it again on the same data and waits until it
// accepts connections.
func (d *deployment) stopPostgres(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := d.PG.Stop(ctx); err != nil {
		t.Fatalf("stop PostgreSQL: %v", err)
	}
}

func (d *deployment) startPostgres(t *testing.T) {
	t.Helper()
	d.restartPostgres(t) // Restart of a stopped cluster only starts it
}

// Finished is a shell command that records that the command got to its end
// on this host.
func (m *markers) Finished() string { return fmt.Sprintf(`echo x >> %s/fin-%s`, m.dir, hostIP) }

// WaitFinished waits until n hosts have run Finished.
func (m *markers) WaitFinished(t *testing.T, n int) {
	t.Helper()
	count := func() int {
		names, _ := filepath.Glob(filepath.Join(m.dir, "fin-*"))
		return len(names)
	}
	deadline := time.Now().Add(waitLimit)
	for count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d hosts finished within %s, want %d", count(), waitLimit, n)
		}
		time.Sleep(50 * time.Millisecond) // polling the hosts' markers
	}
}
