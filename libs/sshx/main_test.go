package sshx_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/testenv"
	"github.com/testum/testum/libs/testum"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

// waitFor bounds every wait of these tests: a hang guard, generous so that
// a loaded machine never fails them; they assert no timing beyond "within
// the connect timeout".
const waitFor = 30 * time.Second

// testConfig keeps keepalives quick so that a dead peer is found fast.
var testConfig = sshx.Config{ConnectTimeout: 5 * time.Second, KeepAlive: 200 * time.Millisecond}

var autoAdd = sshx.HostKeyCheck{Policy: testum.HostKeyAutoAdd}

// hostAddr is host i of the sshd as host:port.
func hostAddr(s *testenv.SSHD, i int) string {
	a := s.Addr(i)
	if _, _, err := net.SplitHostPort(a); err == nil {
		return a
	}
	return net.JoinHostPort(a, strconv.Itoa(s.Port))
}

// hostIP is host i of the sshd without the port, as Processes wants it.
func hostIP(s *testenv.SSHD, i int) string {
	a := s.Addr(i)
	if h, _, err := net.SplitHostPort(a); err == nil {
		return h
	}
	return a
}

func passwordTarget(s *testenv.SSHD, i int) sshx.Target {
	return sshx.Target{Addr: hostAddr(s, i), User: s.PasswordUser.Name, Password: s.PasswordUser.Password, HostKey: autoAdd}
}

func keyTarget(s *testenv.SSHD, i int) sshx.Target {
	return sshx.Target{Addr: hostAddr(s, i), User: s.KeyUser.Name, PrivateKey: s.KeyUser.KeyPEM, HostKey: autoAdd}
}

func dial(t *testing.T, target sshx.Target, cfg sshx.Config) *sshx.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := sshx.Dial(ctx, target, cfg)
	if err != nil {
		t.Fatalf("Dial %s: %v", target.Addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// dialError dials, expects a *DialError of the given failure, and returns it.
func dialError(t *testing.T, target sshx.Target, cfg sshx.Config, want sshx.Failure) *sshx.DialError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := sshx.Dial(ctx, target, cfg)
	if err == nil {
		_ = c.Close()
		t.Fatalf("Dial %s succeeded, want %s", target.Addr, want)
	}
	var de *sshx.DialError
	if !errors.As(err, &de) {
		t.Fatalf("Dial %s: %v (%T), want a *sshx.DialError", target.Addr, err, err)
	}
	if de.Failure != want {
		t.Fatalf("Dial %s: failure %s (%v), want %s", target.Addr, de.Failure, err, want)
	}
	assertNoSecrets(t, err.Error(), target)
	return de
}

// assertNoSecrets checks that no secret of the chain leaks into a message.
func assertNoSecrets(t *testing.T, msg string, target sshx.Target) {
	t.Helper()
	for h := &target; h != nil; h = h.Jump {
		for _, secret := range []string{h.Password, string(h.Passphrase)} {
			if secret != "" && strings.Contains(msg, secret) {
				t.Fatalf("message %q contains a secret", msg)
			}
		}
		if len(h.PrivateKey) > 0 && strings.Contains(msg, "PRIVATE KEY") {
			t.Fatalf("message %q contains key material", msg)
		}
	}
}

// run runs cmd to its end and returns its output.
func run(t *testing.T, c *sshx.Client, cmd string) (stdout, stderr string, res sshx.Result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var out, errOut bytes.Buffer
	res, err := c.Run(ctx, sshx.Command{Cmd: cmd, Stdout: &out, Stderr: &errOut})
	if err != nil {
		t.Fatalf("Run %q: %v", cmd, err)
	}
	return out.String(), errOut.String(), res
}

func hostKeyOfType(t *testing.T, s *testenv.SSHD, keyType string) ssh.PublicKey {
	t.Helper()
	for _, k := range s.HostKeys {
		if k.Type() == keyType {
			return k
		}
	}
	t.Fatalf("the sshd has no %s host key", keyType)
	return nil
}

func sameKey(a, b ssh.PublicKey) bool {
	return a != nil && b != nil && bytes.Equal(a.Marshal(), b.Marshal())
}

// newKey generates a client key of the given kind and returns it as an
// OpenSSH PEM (encrypted when passphrase is set) with its public key.
func newKey(t *testing.T, kind, passphrase string) ([]byte, ssh.PublicKey) {
	t.Helper()
	var (
		priv any
		pub  any
		err  error
	)
	switch kind {
	case "ed25519":
		var k ed25519.PrivateKey
		pub, k, err = ed25519.GenerateKey(rand.Reader)
		priv = k
	case "ecdsa":
		var k *ecdsa.PrivateKey
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		priv, pub = k, k.Public()
	case "rsa":
		var k *rsa.PrivateKey
		k, err = rsa.GenerateKey(rand.Reader, 2048)
		priv, pub = k, k.Public()
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "sshx test")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "sshx test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block), sshPub
}

// processes lists the processes of host addr whose command line contains
// marker.
func processes(t *testing.T, s *testenv.SSHD, addr, marker string) []testenv.Process {
	t.Helper()
	all, err := s.Processes(addr)
	if err != nil {
		t.Fatalf("Processes(%s): %v", addr, err)
	}
	var found []testenv.Process
	for _, p := range all {
		if strings.Contains(p.Cmdline, marker) {
			found = append(found, p)
		}
	}
	return found
}

// eventually polls cond every 20ms until it holds or waitFor passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", waitFor, what)
		}
		<-tick.C
	}
}

// lineWriter collects output and closes seen when want has arrived.
type lineWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
}

func newLineWriter(want string) *lineWriter {
	return &lineWriter{want: want, seen: make(chan struct{})}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.buf.String(), w.want)
	w.buf.Write(p)
	if !had && strings.Contains(w.buf.String(), w.want) {
		close(w.seen)
	}
	return len(p), nil
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// freezingProxy forwards TCP to an sshd until freeze, after which it
// forwards nothing while keeping the sockets open: a peer that died
// without a FIN, as a crashed host or a dropped route looks.
type freezingProxy struct {
	ln     net.Listener
	target string
	frozen chan struct{}
	done   chan struct{}
	once   sync.Once
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startFreezingProxy(t *testing.T, target string) *freezingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezingProxy{ln: ln, target: target, frozen: make(chan struct{}), done: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *freezingProxy) Addr() string { return p.ln.Addr().String() }

func (p *freezingProxy) freeze() { p.once.Do(func() { close(p.frozen) }) }

func (p *freezingProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(out, in)
		go p.pipe(in, out)
	}
}

func (p *freezingProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.frozen:
			<-p.done // hold the sockets open, forward nothing
			return
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
	}
}

// dropAll closes every proxied connection: the host vanished with a reset.
func (p *freezingProxy) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
}

func (p *freezingProxy) close() {
	close(p.done)
	_ = p.ln.Close()
	p.dropAll()
	p.wg.Wait()
}

var _ io.Writer = (*lineWriter)(nil)
