package testenv

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// sshdBinary is Debian's OpenSSH server (openssh-server).
const sshdBinary = "/usr/sbin/sshd"

// userPrefix names every OS user the harness creates; sshd allows only them.
const userPrefix = "testum-"

// User is an OS account the hosts accept.
type User struct {
	Name     string
	Password string
	Home     string
	UID, GID int
	Key      ssh.Signer // nil unless the user logs in with a key
	KeyPEM   []byte     // the private key, OpenSSH PEM, unencrypted
}

// SSHD is one real sshd listening on 0.0.0.0:Port: every 127.x.y.z address
// reaches it, so it plays as many hosts as the test needs.
type SSHD struct {
	Port         int
	HostKeys     []ssh.PublicKey
	PasswordUser *User
	KeyUser      *User

	dir  string
	conf string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *lockedBuffer
}

// shared users of this test binary, created once.
var shared struct {
	once       sync.Once
	pw, key    *User
	err        error
	authorized string // the harness's authorized_keys directory
}

// StartSSHD starts an sshd of its own for the test (own port, own host
// keys); the shared password and key users log in to it.
func StartSSHD(t testing.TB) *SSHD {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("testenv: sshd and its test users need root")
	}
	if _, err := os.Stat(sshdBinary); err != nil {
		t.Skip("testenv: no " + sshdBinary + " (apt-get install openssh-server; make test installs it)")
	}
	pw, key, err := sharedUsers()
	if err != nil {
		t.Fatalf("testenv: users: %v", err)
	}
	dir, err := os.MkdirTemp("", "testenv-sshd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &SSHD{Port: FreePort(t), PasswordUser: pw, KeyUser: key, dir: dir, conf: filepath.Join(dir, "sshd_config")}
	if err := s.newHostKeys(); err != nil {
		t.Fatal(err)
	}
	if err := s.writeConfig(); err != nil {
		t.Fatal(err)
	}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	return s
}

func (s *SSHD) newHostKeys() error {
	s.HostKeys = nil
	for _, kt := range []string{"ed25519", "ecdsa", "rsa"} {
		p := filepath.Join(s.dir, "host_"+kt)
		os.Remove(p)
		os.Remove(p + ".pub")
		args := []string{"-q", "-t", kt, "-N", "", "-f", p}
		if kt == "rsa" {
			args = append(args, "-b", "2048")
		}
		if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ssh-keygen %s: %v: %s", kt, err, out)
		}
		b, err := os.ReadFile(p + ".pub")
		if err != nil {
			return err
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
		if err != nil {
			return err
		}
		s.HostKeys = append(s.HostKeys, pub)
	}
	return nil
}

func (s *SSHD) writeConfig() error {
	conf := fmt.Sprintf(`ListenAddress 0.0.0.0:%d
HostKey %[2]s/host_ed25519
HostKey %[2]s/host_ecdsa
HostKey %[2]s/host_rsa
PidFile %[2]s/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
AuthorizedKeysFile .ssh/authorized_keys %[3]s/%%u
AllowUsers %[4]s*@127.*
MaxStartups 1000:30:1000
MaxSessions 100
MaxAuthTries 6
LoginGraceTime 30
UseDNS no
PrintMotd no
PrintLastLog no
ClientAliveInterval 0
Subsystem sftp internal-sftp
`, s.Port, s.dir, shared.authorized, userPrefix)
	return os.WriteFile(s.conf, []byte(conf), 0o600)
}

func (s *SSHD) start() error {
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return err
	}
	s.log = &lockedBuffer{}
	cmd := exec.Command(sshdBinary, "-D", "-e", "-f", s.conf)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testenv: start sshd: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	err := waitFor(30*time.Second, func() error {
		select {
		case <-done:
			return fmt.Errorf("sshd exited: %s", s.log.String())
		default:
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)), time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "SSH-2.0") {
			return fmt.Errorf("banner %q", line)
		}
		return nil
	})
	if err != nil {
		s.stop()
		return fmt.Errorf("testenv: sshd on port %d: %w", s.Port, err)
	}
	return nil
}

// stop ends the daemon (the listener; sessions it spawned end with their
// connections).
func (s *SSHD) stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Log is what sshd wrote, for failure messages.
func (s *SSHD) Log() string { return s.log.String() }

// Addr is the address of host i: 127.0.<1+i/254>.<1+i%254>.
func (s *SSHD) Addr(i int) string {
	return fmt.Sprintf("127.0.%d.%d", 1+i/254, 1+i%254)
}

// RestartWithNewHostKeys restarts the daemon on the same port with new host
// keys: every host now presents a changed key.
func (s *SSHD) RestartWithNewHostKeys(t testing.TB) {
	t.Helper()
	s.stop()
	if err := s.newHostKeys(); err != nil {
		t.Fatal(err)
	}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// sharedUsers creates the password and key users once per test binary.
func sharedUsers() (*User, *User, error) {
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "testenv-keys-")
		if err != nil {
			shared.err = err
			return
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			shared.err = err
			return
		}
		shared.authorized = dir
		atTeardown(func() { os.RemoveAll(dir) })
		if shared.pw, err = newUser("pw"); err != nil {
			shared.err = err
			return
		}
		if shared.key, err = newUser("key"); err != nil {
			shared.err = err
			return
		}
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			shared.err = err
			return
		}
		block, err := ssh.MarshalPrivateKey(priv, "testenv")
		if err != nil {
			shared.err = err
			return
		}
		shared.key.KeyPEM = pem.EncodeToMemory(block)
		if shared.key.Key, err = ssh.NewSignerFromKey(priv); err != nil {
			shared.err = err
			return
		}
		sshPub, err := ssh.NewPublicKey(pub)
		if err != nil {
			shared.err = err
			return
		}
		shared.err = authorize(shared.key, sshPub)
	})
	return shared.pw, shared.key, shared.err
}

// NewUser creates a fresh OS user with a password and no authorized key;
// it is deleted when the test ends.
func (s *SSHD) NewUser(t testing.TB) *User {
	t.Helper()
	u, err := newUser("u")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { deleteUser(u.Name) })
	return u
}

// AuthorizeKey lets u log in with pub.
func (s *SSHD) AuthorizeKey(t testing.TB, u *User, pub ssh.PublicKey) {
	t.Helper()
	if err := authorize(u, pub); err != nil {
		t.Fatal(err)
	}
}

func authorize(u *User, pub ssh.PublicKey) error {
	f, err := os.OpenFile(filepath.Join(shared.authorized, u.Name), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(ssh.MarshalAuthorizedKey(pub))
	return err
}

// newUser runs useradd under a lock shared by every test binary (useradd
// edits /etc/passwd and refuses concurrent runs).
func newUser(kind string) (*User, error) {
	lock, err := os.OpenFile("/run/lock/testum-testenv-users.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		lock, err = os.OpenFile(filepath.Join(os.TempDir(), "testum-testenv-users.lock"), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, err
		}
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return nil, err
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN) //nolint:errcheck
	name := userPrefix + kind + "-" + randomHex(4)
	if out, err := exec.Command("useradd", "-m", "-s", "/bin/bash", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("useradd %s: %v: %s", name, err, out)
	}
	atTeardown(func() { deleteUser(name) })
	pass := "pw-" + randomHex(8)
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(name + ":" + pass + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("chpasswd %s: %v: %s", name, err, out)
	}
	lu, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.Atoi(lu.Uid)
	gid, _ := strconv.Atoi(lu.Gid)
	return &User{Name: name, Password: pass, Home: lu.HomeDir, UID: uid, GID: gid}, nil
}

var deleted sync.Map

func deleteUser(name string) {
	if _, done := deleted.LoadOrStore(name, true); done {
		return
	}
	// Processes left by a failed test would block userdel.
	_ = exec.Command("pkill", "-KILL", "-u", name).Run()
	_ = exec.Command("userdel", "-r", "-f", name).Run()
}

// Process is a process running on a "host" of an SSHD.
type Process struct {
	PID     int
	User    string
	Cmdline string
}

// Processes lists the processes started by sessions to addr on this sshd,
// found by the SSH_CONNECTION of their environment.
func (s *SSHD) Processes(addr string) ([]Process, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		match := false
		for _, kv := range bytes.Split(env, []byte{0}) {
			v, ok := bytes.CutPrefix(kv, []byte("SSH_CONNECTION="))
			if !ok {
				continue
			}
			f := strings.Fields(string(v))
			match = len(f) == 4 && f[2] == addr && f[3] == strconv.Itoa(s.Port)
			break
		}
		if !match {
			continue
		}
		cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		p := Process{PID: pid, Cmdline: strings.TrimSpace(string(bytes.ReplaceAll(cl, []byte{0}, []byte{' '})))}
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d", pid), &st) == nil {
			if u, err := user.LookupId(strconv.Itoa(int(st.Uid))); err == nil {
				p.User = u.Username
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
