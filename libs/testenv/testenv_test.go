package testenv_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

func TestPostgresDistinctDatabases(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, b := testenv.Postgres(t), testenv.Postgres(t)
	if a == b {
		t.Fatalf("same URL twice: %s", a)
	}
	ca, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close(ctx)
	cb, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close(ctx)
	if _, err := ca.Exec(ctx, "CREATE TABLE only_in_a (v int)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := cb.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("table visible in the other database: %d, %v", n, err)
	}
}

func TestNewPostgresClusterRestart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := testenv.NewPostgresCluster(t)
	conn, err := pgx.Connect(ctx, c.URL("testum"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE t (v int)"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err = pgx.Connect(ctx, c.URL("testum"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
}

// hostKeyIn accepts only a host key listed in keys.
func hostKeyIn(keys []ssh.PublicKey) ssh.HostKeyCallback {
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		for _, k := range keys {
			if bytes.Equal(k.Marshal(), key.Marshal()) {
				return nil
			}
		}
		return fmt.Errorf("unknown host key %s", ssh.FingerprintSHA256(key))
	}
}

func dial(t *testing.T, s *testenv.SSHD, host int, user string, auth ssh.AuthMethod, keys []ssh.PublicKey) (*ssh.Client, error) {
	t.Helper()
	return ssh.Dial("tcp", net.JoinHostPort(s.Addr(host), strconv.Itoa(s.Port)), &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{auth},
		HostKeyCallback: hostKeyIn(keys),
		Timeout:         10 * time.Second,
	})
}

func output(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("%s: %v: %s", cmd, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestSSHDLogins(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	if got := s.Addr(5); got != "127.0.1.6" {
		t.Fatalf("Addr(5) = %s", got)
	}
	if got := s.Addr(254); got != "127.0.2.1" {
		t.Fatalf("Addr(254) = %s", got)
	}
	if len(s.HostKeys) != 3 {
		t.Fatalf("%d host keys", len(s.HostKeys))
	}
	logins := map[string]struct {
		user string
		auth ssh.AuthMethod
	}{
		"password":          {s.PasswordUser.Name, ssh.Password(s.PasswordUser.Password)},
		"key":               {s.KeyUser.Name, ssh.PublicKeys(s.KeyUser.Key)},
		"key-pem":           {s.KeyUser.Name, ssh.PublicKeys(mustParseKey(t, s.KeyUser.KeyPEM))},
		"key-user-password": {s.KeyUser.Name, ssh.Password(s.KeyUser.Password)},
	}
	for name, l := range logins {
		t.Run(name, func(t *testing.T) {
			c, err := dial(t, s, 5, l.user, l.auth, s.HostKeys)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			f := strings.Fields(output(t, c, "echo $SSH_CONNECTION"))
			if len(f) != 4 || f[2] != "127.0.1.6" || f[3] != strconv.Itoa(s.Port) {
				t.Fatalf("SSH_CONNECTION %q", f)
			}
			if who := output(t, c, "id -un"); who != l.user {
				t.Fatalf("logged in as %q, want %q", who, l.user)
			}
		})
	}
	if _, err := dial(t, s, 5, s.PasswordUser.Name, ssh.Password("wrong"), s.HostKeys); err == nil {
		t.Fatal("wrong password accepted")
	}
}

func mustParseKey(t *testing.T, pemBytes []byte) ssh.Signer {
	t.Helper()
	k, err := ssh.ParsePrivateKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSSHDRestartWithNewHostKeys(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	old := slices.Clone(s.HostKeys)
	port := s.Port
	s.RestartWithNewHostKeys(t)
	if s.Port != port {
		t.Fatalf("port changed: %d -> %d", port, s.Port)
	}
	for i := range old {
		if bytes.Equal(old[i].Marshal(), s.HostKeys[i].Marshal()) {
			t.Fatalf("host key %s unchanged", old[i].Type())
		}
	}
	if _, err := dial(t, s, 1, s.KeyUser.Name, ssh.PublicKeys(s.KeyUser.Key), old); err == nil || !strings.Contains(err.Error(), "unknown host key") {
		t.Fatalf("old host keys: want a host key mismatch, got %v", err)
	}
	c, err := dial(t, s, 1, s.KeyUser.Name, ssh.PublicKeys(s.KeyUser.Key), s.HostKeys)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
}

func TestSSHDNewUserAuthorizeKey(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	u := s.NewUser(t)
	if !strings.HasPrefix(u.Name, "testum-") || u.UID == 0 || u.Home == "" {
		t.Fatalf("user %+v", u)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t, s, 2, u.Name, ssh.PublicKeys(signer), s.HostKeys); err == nil {
		t.Fatal("key accepted before AuthorizeKey")
	}
	s.AuthorizeKey(t, u, signer.PublicKey())
	c, err := dial(t, s, 2, u.Name, ssh.PublicKeys(signer), s.HostKeys)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if who := output(t, c, "id -un"); who != u.Name {
		t.Fatalf("logged in as %q", who)
	}
	c2, err := dial(t, s, 2, u.Name, ssh.Password(u.Password), s.HostKeys)
	if err != nil {
		t.Fatalf("password login: %v", err)
	}
	_ = c2.Close()
}

func TestSSHDProcesses(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	c, err := dial(t, s, 7, s.PasswordUser.Name, ssh.Password(s.PasswordUser.Password), s.HostKeys)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	marker := "testenv-marker-" + strconv.Itoa(os.Getpid())
	// Not a lone "sleep 1000 # marker": bash -c would exec sleep and drop
	// the comment from the command line.
	if err := sess.Start("sleep 1000; true # " + marker); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr(7)
	var found *testenv.Process
	deadline := time.Now().Add(15 * time.Second)
	for found == nil && time.Now().Before(deadline) {
		ps, err := s.Processes(addr)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range ps {
			if strings.Contains(p.Cmdline, marker) {
				found = &ps[i]
			}
		}
		if found == nil {
			time.Sleep(50 * time.Millisecond) // polling /proc, bounded by deadline
		}
	}
	if found == nil {
		t.Fatalf("no process with %q on %s", marker, addr)
	}
	if found.User != s.PasswordUser.Name {
		t.Fatalf("process user %q, want %q", found.User, s.PasswordUser.Name)
	}
	// Another host of the same sshd sees nothing of it.
	ps, err := s.Processes(s.Addr(8))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if strings.Contains(p.Cmdline, marker) {
			t.Fatalf("process %+v listed for another host", p)
		}
	}
	// sshd delivers the signal to the session's whole process group.
	if err := sess.Signal(ssh.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- sess.Wait() }()
	select {
	case err := <-waited:
		if err == nil {
			t.Fatal("killed command exited cleanly")
		}
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(found.PID, syscall.SIGKILL)
		t.Fatal("the session did not end after SIGKILL")
	}
}

func TestSSHDParallelStarts(t *testing.T) {
	t.Parallel()
	ports := make(chan int, 3)
	for i := range 3 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			s := testenv.StartSSHD(t)
			c, err := dial(t, s, i, s.KeyUser.Name, ssh.PublicKeys(s.KeyUser.Key), s.HostKeys)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.Close()
			ports <- s.Port
		})
	}
	t.Cleanup(func() {
		close(ports)
		seen := map[int]bool{}
		for p := range ports {
			if seen[p] {
				t.Errorf("port %d used twice", p)
			}
			seen[p] = true
		}
	})
}

func TestSilentServerHandshakeTimesOut(t *testing.T) {
	t.Parallel()
	addr := testenv.SilentServer(t)
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(300 * time.Millisecond))
	_, _, _, err = ssh.NewClientConn(conn, addr, &ssh.ClientConfig{User: "x", HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	var ne net.Error
	if err == nil || !errorAs(err, &ne) || !ne.Timeout() {
		t.Fatalf("handshake with a silent server: want a timeout, got %v", err)
	}
}

func errorAs(err error, target *net.Error) bool {
	for e := err; e != nil; {
		if ne, ok := e.(net.Error); ok {
			*target = ne
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}

func TestClosedAndFreePorts(t *testing.T) {
	t.Parallel()
	p := testenv.ClosedPort(t)
	if _, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), 5*time.Second); err == nil {
		t.Fatal("connected to the closed port")
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t))))
	if err != nil {
		t.Fatal(err)
	}
	_ = l.Close()
}

func TestNATSRestartKeepsStream(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := testenv.NATS(t)
	url := n.URL
	nc, err := nats.Connect(n.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "KEPT", Subjects: []string{"kept.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "kept.one", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	n.Restart(t)
	if n.URL != url {
		t.Fatalf("URL changed across restart: %s -> %s", url, n.URL)
	}
	nc2, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js2, err := jetstream.New(nc2)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js2.Stream(ctx, "KEPT")
	if err != nil {
		t.Fatalf("stream after restart: %v", err)
	}
	msg, err := st.GetMsg(ctx, 1)
	if err != nil || string(msg.Data) != "hello" {
		t.Fatalf("message after restart: %v, %v", msg, err)
	}
}
