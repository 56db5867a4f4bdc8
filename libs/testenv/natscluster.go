package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsServerModule is the module `make deps` installs the nats-server
// binary from, at the version go.mod pins: the cluster runs the server that
// testum embeds.
const natsServerModule = "github.com/nats-io/nats-server/v2"

// clusterWait bounds every wait of the cluster harness: a node's start,
// a meta leader, a stop.
const clusterWait = 60 * time.Second

// NATSCluster is a JetStream cluster of real nats-server processes on
// loopback: each node has its own ports, store directory and log, routes to
// every other node, and can be killed, paused and restarted on its own.
// Processes started by later multi-process tests connect to URLs().
type NATSCluster struct {
	Name  string // the cluster name
	Nodes []*NATSNode
	bin   string
}

// NATSNode is one nats-server of a NATSCluster. Its ports and store stay
// the same across restarts.
type NATSNode struct {
	Name        string // server_name, as stream and meta leaders are reported
	URL         string // nats://127.0.0.1:PORT
	ClientPort  int
	ClusterPort int
	HTTPPort    int // monitoring (/healthz, /jsz)

	dir, conf, logPath string
	mu                 sync.Mutex // guards cmd, done and paused
	cmd                *exec.Cmd
	done               chan struct{}
	paused             bool
}

// FindNATSServer returns the path of the nats-server binary: $GOBIN,
// $GOPATH/bin or ~/go/bin (where `make deps` installs it), else PATH. It
// returns "" if there is none.
func FindNATSServer() string {
	var cands []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		cands = append(cands, filepath.Join(gobin, "nats-server"))
	}
	if gopath := os.Getenv("GOPATH"); gopath != "" {
		cands = append(cands, filepath.Join(filepath.SplitList(gopath)[0], "bin", "nats-server"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		cands = append(cands, filepath.Join(home, "go", "bin", "nats-server"))
	}
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return c
		}
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	return ""
}

// wantNATSServerVersion is the nats-server version this test binary was
// built with: go.mod's.
func wantNATSServerVersion() string { return "v" + server.VERSION }

// requireNATSServer fails the test unless bin is a nats-server of version
// want (any version when want is ""). A suite that skipped the cluster
// tests would pass without testing what it claims to.
func requireNATSServer(t testing.TB, bin, want string) {
	t.Helper()
	install := "`make deps` installs it (go install " + natsServerModule + "@" + want + ")"
	if bin == "" {
		t.Fatal("testenv: nats-server binary not found in $GOBIN, $GOPATH/bin, ~/go/bin or PATH; " + install)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: %s --version: %v: %s; %s", bin, err, out, install)
	}
	if got := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "nats-server:")); want != "" && got != want {
		t.Fatalf("testenv: %s is nats-server %s, go.mod pins %s; %s", bin, got, want, install)
	}
}

// StartNATSCluster starts a 3-node JetStream cluster and waits until it has
// a meta leader that every node follows; it is killed when the test ends.
// Without the nats-server binary the test fails.
func StartNATSCluster(t testing.TB) *NATSCluster {
	t.Helper()
	bin := FindNATSServer()
	requireNATSServer(t, bin, wantNATSServerVersion())
	var err error
	// The ports were free a moment ago; another test binary may take one
	// before a node binds it, so try a few times with new ones.
	for attempt := 1; attempt <= 3; attempt++ {
		var c *NATSCluster
		if c, err = startCluster(t, bin, 3); err == nil {
			t.Cleanup(func() {
				if t.Failed() {
					for _, n := range c.Nodes {
						t.Logf("testenv: %s log:\n%s", n.Name, n.Log())
					}
				}
			})
			c.WaitJetStream(t)
			return c
		}
	}
	t.Fatalf("testenv: nats cluster: %v", err)
	return nil
}

func startCluster(t testing.TB, bin string, size int) (*NATSCluster, error) {
	dir, err := os.MkdirTemp("", "testenv-natscluster-")
	if err != nil {
		return nil, err
	}
	c := &NATSCluster{Name: "testenv-" + randomHex(3), bin: bin}
	stop := func() {
		for _, n := range c.Nodes {
			n.kill()
		}
		_ = os.RemoveAll(dir)
	}
	t.Cleanup(stop)
	atTeardown(stop) // an interrupted test binary skips the cleanups
	for i := range size {
		n := &NATSNode{Name: fmt.Sprintf("n%d", i), dir: filepath.Join(dir, fmt.Sprintf("n%d", i))}
		if n.ClientPort, err = freeTCPPort(); err != nil {
			return nil, err
		}
		if n.ClusterPort, err = freeTCPPort(); err != nil {
			return nil, err
		}
		if n.HTTPPort, err = freeTCPPort(); err != nil {
			return nil, err
		}
		n.URL = fmt.Sprintf("nats://127.0.0.1:%d", n.ClientPort)
		n.conf, n.logPath = filepath.Join(n.dir, "nats.conf"), filepath.Join(n.dir, "nats.log")
		c.Nodes = append(c.Nodes, n)
	}
	var routes []string
	for _, n := range c.Nodes {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", n.ClusterPort))
	}
	for _, n := range c.Nodes {
		if err := n.writeConfig(c.Name, routes); err != nil {
			return nil, err
		}
	}
	for _, n := range c.Nodes {
		if err := n.start(bin); err != nil {
			for _, m := range c.Nodes {
				m.kill()
			}
			return nil, err
		}
	}
	return c, nil
}

func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (n *NATSNode) writeConfig(cluster string, routes []string) error {
	if err := os.MkdirAll(filepath.Join(n.dir, "store"), 0o700); err != nil {
		return err
	}
	quoted := make([]string, len(routes))
	for i, r := range routes {
		quoted[i] = strconv.Quote(r)
	}
	conf := fmt.Sprintf(`server_name: %q
listen: "127.0.0.1:%d"
http: "127.0.0.1:%d"
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 32GB
}
cluster {
  name: %q
  listen: "127.0.0.1:%d"
  routes: [%s]
}
`, n.Name, n.ClientPort, n.HTTPPort, filepath.Join(n.dir, "store"), cluster, n.ClusterPort, strings.Join(quoted, ", "))
	return os.WriteFile(n.conf, []byte(conf), 0o600)
}

func (n *NATSNode) start(bin string) error {
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child keeps its own descriptor
	fmt.Fprintf(logf, "--- testenv: starting %s at %s\n", n.Name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(bin, "-c", n.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group keeps a terminal's ^C for the test binary;
	// Pdeathsig covers a test binary that is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start nats-server %s: %w", n.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
	err = waitFor(clusterWait, func() error {
		select {
		case <-done:
			return errors.New("nats-server exited")
		default:
		}
		client := http.Client{Timeout: 2 * time.Second}
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/varz", n.HTTPPort))
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.ClientPort), time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		n.kill()
		return fmt.Errorf("nats-server %s: %w\nlog:\n%s", n.Name, err, n.Log())
	}
	return nil
}

// kill ends the process with SIGKILL (also when it is paused) and waits
// for it; a node that is not running is left alone.
func (n *NATSNode) kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd, n.done, n.paused = nil, nil, false
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done // SIGKILL cannot be caught: the wait is short
}

// Running reports whether the node's process is up (paused counts as up).
func (n *NATSNode) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// serving reports whether the node is up and not paused.
func (n *NATSNode) serving() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil && !n.paused
}

// Log is what the node wrote (its last 64 KiB), for failure messages.
func (n *NATSNode) Log() string {
	f, err := os.Open(n.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const max = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(fi.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, max))
	return string(b)
}

// URLs are the client URLs of every node.
func (c *NATSCluster) URLs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.URL)
	}
	return out
}

// URL is every node's client URL, comma-separated, as NATS_URL and
// nats.Connect take them.
func (c *NATSCluster) URL() string { return strings.Join(c.URLs(), ",") }

func (c *NATSCluster) node(t testing.TB, i int) *NATSNode {
	t.Helper()
	if i < 0 || i >= len(c.Nodes) {
		t.Fatalf("testenv: nats cluster has no node %d", i)
	}
	return c.Nodes[i]
}

// Kill sends SIGKILL to node i and waits until it is gone.
func (c *NATSCluster) Kill(t testing.TB, i int) {
	t.Helper()
	c.node(t, i).kill()
}

// Pause stops node i with SIGSTOP: it holds its connections and answers
// nothing, like a frozen machine.
func (c *NATSCluster) Pause(t testing.TB, i int) { c.signal(t, i, syscall.SIGSTOP) }

// Resume continues node i after Pause (SIGCONT).
func (c *NATSCluster) Resume(t testing.TB, i int) { c.signal(t, i, syscall.SIGCONT) }

func (c *NATSCluster) signal(t testing.TB, i int, sig syscall.Signal) {
	t.Helper()
	n := c.node(t, i)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		t.Fatalf("testenv: %s is not running", n.Name)
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("testenv: %s %s: %v", sig, n.Name, err)
	}
	n.paused = sig == syscall.SIGSTOP
}

// Restart stops node i (SIGTERM, SIGKILL after a bounded wait; a killed
// node is just started) and starts it again on the same ports and store.
// It waits for the node, not for the cluster: call WaitJetStream for that.
func (c *NATSCluster) Restart(t testing.TB, i int) {
	t.Helper()
	n := c.node(t, i)
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGCONT) // a paused node cannot act on SIGTERM
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(clusterWait):
			t.Logf("testenv: %s did not stop on SIGTERM within %s; killing it", n.Name, clusterWait)
		}
		n.kill()
	}
	if err := n.start(c.bin); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// jsz is the part of a node's /jsz this harness reads.
type jsz struct {
	Meta *struct {
		Leader   string `json:"leader"`
		Size     int    `json:"cluster_size"`
		Replicas []struct {
			Name    string `json:"name"`
			Current bool   `json:"current"`
			Offline bool   `json:"offline"`
		} `json:"replicas"`
	} `json:"meta_cluster"`
}

func (n *NATSNode) jsz() (jsz, error) {
	var out jsz
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz", n.HTTPPort))
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("%s /jsz: %s", n.Name, resp.Status)
	}
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// metaLeader is the node index that leads the meta group with every other
// running node following it and current, or an error saying what is
// missing.
func (c *NATSCluster) metaLeader() (int, error) {
	leader := ""
	for _, n := range c.Nodes {
		if !n.serving() {
			continue
		}
		j, err := n.jsz()
		if err != nil {
			return -1, err
		}
		if j.Meta == nil || j.Meta.Leader == "" {
			return -1, fmt.Errorf("%s sees no meta leader", n.Name)
		}
		if leader != "" && j.Meta.Leader != leader {
			return -1, fmt.Errorf("%s follows %s, others %s", n.Name, j.Meta.Leader, leader)
		}
		leader = j.Meta.Leader
	}
	for i, n := range c.Nodes {
		if n.Name != leader || !n.serving() {
			continue
		}
		j, err := n.jsz()
		if err != nil {
			return -1, err
		}
		if j.Meta == nil || j.Meta.Size != len(c.Nodes) {
			return -1, fmt.Errorf("meta leader %s knows a cluster of %v, want %d", leader, j.Meta, len(c.Nodes))
		}
		for _, r := range j.Meta.Replicas {
			peer := c.byName(r.Name)
			if peer != nil && peer.serving() && (!r.Current || r.Offline) {
				return -1, fmt.Errorf("meta peer %s is not current", r.Name)
			}
		}
		return i, nil
	}
	return -1, fmt.Errorf("no running node leads the meta group (leader %q)", leader)
}

func (c *NATSCluster) byName(name string) *NATSNode {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// WaitJetStream waits until the running nodes (paused ones aside) agree
// on a meta leader that knows every node and sees them current; it returns
// the leader's index.
func (c *NATSCluster) WaitJetStream(t testing.TB) int {
	t.Helper()
	leader := -1
	err := waitFor(clusterWait, func() error {
		var err error
		leader, err = c.metaLeader()
		return err
	})
	if err != nil {
		t.Fatalf("testenv: nats cluster %s: %v", c.Name, err)
	}
	return leader
}

// Connect opens a client connection to the cluster (every URL), closed
// when the test ends.
func (c *NATSCluster) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	// Quick pings: a client on a paused node notices within seconds and
	// moves to another one.
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.PingInterval(time.Second), nats.MaxPingsOutstanding(2), nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("testenv: connect to nats cluster: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// StreamLeader is the index of the node leading stream, waiting (bounded)
// while the stream has no leader, e.g. during an election.
func (c *NATSCluster) StreamLeader(t testing.TB, stream string) int {
	t.Helper()
	nc := c.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	leader := -1
	err = waitFor(clusterWait, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		info := s.CachedInfo()
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return fmt.Errorf("stream %s has no leader", stream)
		}
		for i, n := range c.Nodes {
			if n.Name == info.Cluster.Leader {
				leader = i
				return nil
			}
		}
		return fmt.Errorf("stream %s is led by %q, not a node of this cluster", stream, info.Cluster.Leader)
	})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return leader
}

// WaitCurrent waits until stream and each of its consumers have a leader
// and every replica is current: only then does losing any one node keep
// them available (a stream or consumer just scaled up is not there yet).
func (c *NATSCluster) WaitCurrent(t testing.TB, stream string) {
	t.Helper()
	nc := c.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	current := func(what string, replicas int, ci *jetstream.ClusterInfo) error {
		switch {
		case ci == nil || ci.Leader == "":
			return fmt.Errorf("%s has no leader", what)
		case ci.Desired != nil:
			return fmt.Errorf("%s is still being moved or scaled", what)
		case len(ci.Replicas) != replicas-1:
			return fmt.Errorf("%s has %d followers, want %d", what, len(ci.Replicas), replicas-1)
		}
		for _, r := range ci.Replicas {
			if !r.Current || r.Pending || r.Offline {
				return fmt.Errorf("%s: replica %s is not current", what, r.Name)
			}
		}
		return nil
	}
	err = waitFor(clusterWait, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		replicas := max(s.CachedInfo().Config.Replicas, 1)
		if err := current("stream "+stream, replicas, s.CachedInfo().Cluster); err != nil {
			return err
		}
		list := s.ListConsumers(ctx)
		for ci := range list.Info() {
			r := replicas
			if ci.Config.Replicas > 0 {
				r = ci.Config.Replicas
			}
			if err := current("consumer "+ci.Name, r, ci.Cluster); err != nil {
				return err
			}
		}
		return list.Err()
	})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
}
