package main

import (
	"io"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/testum/testum/libs/testenv"
)

// shedProxy is a loopback TCP proxy in front of one sshd host. It resets
// its first `shed` connections as soon as it accepts them, before any
// byte, as an sshd over its MaxStartups sheds handshakes, and forwards the
// others; cut resets every forwarded connection, as a network that drops
// a host mid-command.
type shedProxy struct {
	ln     net.Listener
	to     string
	shed   int
	served chan struct{}  // closed when the accept loop ended
	wg     sync.WaitGroup // the forwarding goroutines

	mu       sync.Mutex
	accepted int
	open     []net.Conn
}

func startShedProxy(t *testing.T, listenIP, to string, shed int) *shedProxy {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(listenIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	p := &shedProxy{ln: ln, to: to, shed: shed, served: make(chan struct{})}
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		<-p.served // no connection is added after this
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *shedProxy) serve() {
	defer close(p.served)
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		shed := p.accepted <= p.shed
		p.mu.Unlock()
		if shed {
			resetConn(c)
			continue
		}
		up, err := net.Dial("tcp", p.to)
		if err != nil {
			resetConn(c)
			continue
		}
		p.mu.Lock()
		p.open = append(p.open, c, up)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(up, c)
		go p.pipe(c, up)
	}
}

func (p *shedProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	resetConn(dst)
	resetConn(src)
}

// resetConn closes c with a TCP reset rather than an orderly close.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// cut resets every connection forwarded so far.
func (p *shedProxy) cut() {
	p.mu.Lock()
	open := p.open
	p.open = nil
	p.mu.Unlock()
	for _, c := range open {
		resetConn(c)
	}
}

func (p *shedProxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// platform registers the proxy as a platform that logs in to the sshd
// behind it.
func (p *shedProxy) platform(t *testing.T, s *server, sshd *testenv.SSHD, name string) int64 {
	host, port, _ := net.SplitHostPort(p.ln.Addr().String())
	n, _ := strconv.Atoi(port)
	return s.createPlatform(t, map[string]any{"name": name, "host": host, "port": n, "username": sshd.PasswordUser.Name,
		"auth_method": "password", "password": sshd.PasswordUser.Password})
}

// A host that resets handshakes before authentication (an overloaded sshd)
// is dialed again and ends ok, its record saying how many dials it took;
// one that keeps resetting is given up after the bounded attempts.
func TestHandshakeResetBeforeAuthIsRetried(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	m := newMarkers(t, sshd)
	behind, shedAll := sshd.Addr(1850), sshd.Addr(1852)
	flaky := startShedProxy(t, sshd.Addr(1851), net.JoinHostPort(behind, strconv.Itoa(sshd.Port)), 2)
	dead := startShedProxy(t, sshd.Addr(1853), net.JoinHostPort(shedAll, strconv.Itoa(sshd.Port)), 1<<30)
	ids := []int64{flaky.platform(t, s, sshd, "flaky"), dead.platform(t, s, sshd, "shedding")}

	r := s.waitRun(t, s.startRun(t, map[string]any{"command": m.Ran(), "targets": map[string]any{"platform_ids": ids}}))
	hosts := map[string]int{}
	for _, h := range hostsOf(r) {
		hosts[h.Name] = val(h.ConnectAttempts)
		switch h.Name {
		case "flaky":
			if h.State != "ok" || val(h.ConnectAttempts) != 3 {
				t.Errorf("flaky host: %s after %d dials (%s), want ok after 3", h.State, val(h.ConnectAttempts), val(h.Error))
			}
		case "shedding":
			if h.State != "unreachable" || val(h.ConnectAttempts) != 3 {
				t.Errorf("shedding host: %s after %d dials (%s), want unreachable after 3", h.State, val(h.ConnectAttempts), val(h.Error))
			}
		}
	}
	if n := flaky.Accepted(); n != 3 {
		t.Errorf("the flaky host saw %d connections, want 3 (2 reset, 1 served)", n)
	}
	if n := dead.Accepted(); n != 3 {
		t.Errorf("the shedding host saw %d connections, want 3: the retries are bounded", n)
	}
	if n := m.Count(behind); n != 1 {
		t.Errorf("the command ran %d times on the flaky host, want 1", n)
	}
	if n := m.Count(shedAll); n != 0 {
		t.Errorf("the command ran %d times on the shedding host, want 0", n)
	}
	t.Logf("dials per host: %v", hosts)
}

// A connection that fails once the command's session channel is open is
// never dialed again: the command ran once and the host is lost, not
// retried (it may have finished, or still run).
func TestConnectionCutAfterChannelOpenIsNotRetried(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	m := newMarkers(t, sshd)
	t.Cleanup(func() { m.Open(t) }) // before the markers go: the command's wait ends
	behind := sshd.Addr(1854)
	proxy := startShedProxy(t, sshd.Addr(1855), net.JoinHostPort(behind, strconv.Itoa(sshd.Port)), 0)
	id := proxy.platform(t, s, sshd, "cut")

	runID := s.startRun(t, map[string]any{"command": m.Ran() + "; " + m.Gate(), "targets": map[string]any{"platform_ids": []int64{id}}})
	m.WaitStarted(t, 1)
	proxy.cut()
	r := s.waitRun(t, runID)
	h := hostsOf(r)[0]
	if h.State != "lost" || val(h.ConnectAttempts) != 1 {
		t.Errorf("host: %s after %d dials (%s), want lost after 1", h.State, val(h.ConnectAttempts), val(h.Error))
	}
	if n := proxy.Accepted(); n != 1 {
		t.Errorf("the host saw %d connections, want 1", n)
	}
	if n := m.Count(behind); n != 1 {
		t.Errorf("the command ran %d times, want 1", n)
	}
}
