package testenv

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
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

	dir     string // config, host keys, pid file, log, authorized_keys.<user>
	conf    string
	logPath string
	mu      sync.Mutex // guards cmd, done and the authorized_keys files
	cmd     *exec.Cmd
	done    chan struct{}
}

// requireSSHD fails the test when sshd cannot be started here.
func requireSSHD(t testing.TB, euid int, binary string) {
	t.Helper()
	if euid != 0 {
		t.Fatal("testenv: sshd and its test users need root: run the tests as root (CI does)")
	}
	if _, err := os.Stat(binary); err != nil {
		t.Fatalf("testenv: %v: OpenSSH's server is not installed; `make deps` installs it (apt-get install openssh-server openssh-client)", err)
	}
}

// shared users of this test binary, created once.
var shared struct {
	once    sync.Once
	pw, key *User
	keyPub  ssh.PublicKey
	err     error
}

// StartSSHD starts an sshd of its own for the test (own port, own host
// keys); the shared password and key users log in to it. Without root or
// without OpenSSH the test fails: a suite that skipped them would pass
// without testing what it claims to.
func StartSSHD(t testing.TB) *SSHD {
	t.Helper()
	requireSSHD(t, os.Geteuid(), sshdBinary)
	pw, key, err := sharedUsers()
	if err != nil {
		t.Fatalf("testenv: users: %v", err)
	}
	dir, err := os.MkdirTemp("", "testenv-sshd-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// sshd reads authorized_keys.<user> as that user: the directory must be
	// traversable.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	s := &SSHD{PasswordUser: pw, KeyUser: key, dir: dir,
		conf: filepath.Join(dir, "sshd_config"), logPath: filepath.Join(dir, "sshd.log")}
	if err := s.authorize(key, shared.keyPub); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := s.newHostKeys(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	// The port was free a moment ago; another test binary may take it
	// before sshd binds it, so try a few.
	for attempt := 1; ; attempt++ {
		s.Port = FreePort(t)
		if err = s.writeConfig(); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		if err = s.start(); err == nil || attempt == 5 {
			break
		}
	}
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("testenv: sshd log (port %d):\n%s", s.Port, s.Log())
		}
	})
	return s
}

func (s *SSHD) newHostKeys() error {
	s.HostKeys = nil
	for _, kt := range []string{"ed25519", "ecdsa", "rsa"} {
		p := filepath.Join(s.dir, "host_"+kt)
		_ = os.Remove(p) // ssh-keygen -f does not overwrite
		_ = os.Remove(p + ".pub")
		args := []string{"-q", "-t", kt, "-N", "", "-f", p}
		if kt == "rsa" {
			args = append(args, "-b", "2048")
		}
		if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ssh-keygen %s: %w: %s", kt, err, out)
		}
		b, err := os.ReadFile(p + ".pub")
		if err != nil {
			return fmt.Errorf("host key: %w", err)
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
		if err != nil {
			return fmt.Errorf("host key %s: %w", p, err)
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
AuthorizedKeysFile .ssh/authorized_keys %[2]s/authorized_keys.%%u
AllowUsers %[3]s*@127.*
MaxStartups 1000:30:1000
MaxSessions 100
MaxAuthTries 6
LoginGraceTime 30
UseDNS no
PrintMotd no
PrintLastLog no
ClientAliveInterval 0
Subsystem sftp internal-sftp
`, s.Port, s.dir, userPrefix)
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("sshd config: %w", err)
	}
	return nil
}

func (s *SSHD) start() error {
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return fmt.Errorf("sshd privilege separation dir: %w", err)
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("sshd log: %w", err)
	}
	defer logf.Close() // the child keeps its own descriptor
	fmt.Fprintf(logf, "--- testenv: starting sshd on port %d at %s\n", s.Port, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(sshdBinary, "-D", "-e", "-f", s.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group keeps a terminal's ^C for the test binary, whose
	// Run tears sshd down; Pdeathsig covers a test binary that is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start sshd: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	err = waitFor(30*time.Second, func() error {
		select {
		case <-done:
			return errors.New("sshd exited")
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
			return fmt.Errorf("read banner: %w", err)
		}
		if !strings.HasPrefix(line, "SSH-2.0") {
			return fmt.Errorf("banner %q", line)
		}
		return nil
	})
	if err != nil {
		s.stop()
		return fmt.Errorf("sshd on port %d: %w\nsshd log:\n%s", s.Port, err, s.Log())
	}
	return nil
}

// stop ends the daemon: the listener. Sessions it spawned end with their
// connections.
func (s *SSHD) stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd, s.done = nil, nil
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

// Log is what sshd wrote (its last 64 KiB), for failure messages.
func (s *SSHD) Log() string {
	f, err := os.Open(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no sshd log: %v)", err)
	}
	defer f.Close()
	const max = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(fi.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, max))
	return string(b)
}

// Addr is the address of host i: 127.0.<1+i/254>.<1+i%254>.
func (s *SSHD) Addr(i int) string {
	return fmt.Sprintf("127.0.%d.%d", 1+i/254, 1+i%254)
}

// RestartWithNewHostKeys restarts the daemon on the same port with new host
// keys: every host now presents a changed key. HostKeys is updated; it must
// not be read concurrently with this call.
//
// Like a host that was rebuilt, it also ends the connections the old daemon
// served: a client that kept one open must connect anew, and meet the new keys.
func (s *SSHD) RestartWithNewHostKeys(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	var listener int
	if s.cmd != nil {
		listener = s.cmd.Process.Pid
	}
	s.mu.Unlock()
	sessions := childPIDs(listener)
	s.stop()
	for _, pid := range sessions {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	if err := s.newHostKeys(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := s.start(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// sharedUsers creates the password and key users once per test binary.
func sharedUsers() (*User, *User, error) {
	shared.once.Do(func() {
		var err error
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
		if shared.keyPub, err = ssh.NewPublicKey(pub); err != nil {
			shared.err = err
		}
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

// AuthorizeKey lets u log in to this sshd with pub (other daemons are not
// affected).
func (s *SSHD) AuthorizeKey(t testing.TB, u *User, pub ssh.PublicKey) {
	t.Helper()
	if err := s.authorize(u, pub); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// authorize appends pub to this daemon's authorized_keys.<user> file.
func (s *SSHD) authorize(u *User, pub ssh.PublicKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := filepath.Join(s.dir, "authorized_keys."+u.Name)
	f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("authorize key for %s: %w", u.Name, err)
	}
	if _, err := f.Write(ssh.MarshalAuthorizedKey(pub)); err != nil {
		_ = f.Close()
		return fmt.Errorf("authorize key for %s: %w", u.Name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("authorize key for %s: %w", u.Name, err)
	}
	return nil
}

// newUser runs useradd under a lock shared by every test binary (useradd
// edits /etc/passwd and refuses concurrent runs).
func newUser(kind string) (*User, error) {
	unlock, err := lockUsers()
	if err != nil {
		return nil, err
	}
	defer unlock()
	name := userPrefix + kind + "-" + randomHex(4)
	if out, err := exec.Command("useradd", "-m", "-s", "/bin/bash", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("useradd %s: %w: %s", name, err, out)
	}
	lu, err := user.Lookup(name)
	if err != nil {
		_ = exec.Command("userdel", "-r", "-f", name).Run() // under the lock already
		return nil, fmt.Errorf("look up new user: %w", err)
	}
	uid, _ := strconv.Atoi(lu.Uid)
	gid, _ := strconv.Atoi(lu.Gid)
	if release, err := watchUser(name, uid); err == nil {
		watchdogs.Store(name, release)
	}
	atTeardown(func() { deleteUser(name) })
	pass := "pw-" + randomHex(8)
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(name + ":" + pass + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("chpasswd %s: %w: %s", name, err, out)
	}
	return &User{Name: name, Password: pass, Home: lu.HomeDir, UID: uid, GID: gid}, nil
}

var (
	deleted   sync.Map // user name → true once deleteUser ran
	watchdogs sync.Map // user name → release func of its watchdog
)

// deleteUser kills the processes of a harness user and deletes it with its
// home, once; errors are ignored (best effort).
func deleteUser(name string) {
	if _, done := deleted.LoadOrStore(name, true); done {
		return
	}
	// Processes left by a failed test would keep files of the user busy.
	if u, err := user.Lookup(name); err == nil {
		if uid, err := strconv.Atoi(u.Uid); err == nil && uid > 0 {
			killProcessesOf(uid)
		}
	}
	if unlock, err := lockUsers(); err == nil {
		_ = exec.Command("userdel", "-r", "-f", name).Run()
		unlock()
	}
	if release, ok := watchdogs.LoadAndDelete(name); ok {
		release.(func())()
	}
}

// usersLock serializes useradd and userdel across test binaries: they
// refuse to run while another one holds /etc/passwd.
const usersLock = "/run/lock/testum-testenv-users.lock"

// lockUsers takes usersLock (blocking) and returns its release.
func lockUsers() (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(usersLock), 0o755); err != nil {
		return nil, fmt.Errorf("users lock: %w", err)
	}
	f, err := os.OpenFile(usersLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("users lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("users lock: %w", err)
	}
	return func() { _ = f.Close() }, nil // closing releases the flock
}

// killProcessesOf sends SIGKILL, by pid, to the processes owned by uid.
func killProcessesOf(uid int) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name(), &st) == nil && int(st.Uid) == uid {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
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

// AllowSudo lets u run anything as root with sudo, after typing its own
// password (as a default Debian sudoers asks), until the test ends. The
// rule is a file of its own in /etc/sudoers.d, checked with visudo.
func (s *SSHD) AllowSudo(t testing.TB, u *User) {
	t.Helper()
	s.sudoRule(t, u, u.Name+" ALL=(ALL:ALL) ALL\n")
}

// AllowSudoNoPassword lets u run anything as root with sudo without a
// password (NOPASSWD, as the default user of most cloud images), until the
// test ends.
func (s *SSHD) AllowSudoNoPassword(t testing.TB, u *User) {
	t.Helper()
	s.sudoRule(t, u, u.Name+" ALL=(ALL:ALL) NOPASSWD: ALL\n")
}

// AllowSudoAskingRootPassword lets u run sudo, but sudo asks for root's
// password (rootpw), which no harness user knows: u's own password is
// always refused.
func (s *SSHD) AllowSudoAskingRootPassword(t testing.TB, u *User) {
	t.Helper()
	s.sudoRule(t, u, "Defaults:"+u.Name+" rootpw\n"+u.Name+" ALL=(ALL:ALL) ALL\n")
}

func (s *SSHD) sudoRule(t testing.TB, u *User, rule string) {
	t.Helper()
	if !strings.HasPrefix(u.Name, userPrefix) {
		t.Fatalf("testenv: sudo rules are for the harness's own users, not %q", u.Name)
	}
	path := filepath.Join("/etc/sudoers.d", u.Name)
	if err := os.WriteFile(path, []byte(rule), 0o440); err != nil {
		t.Fatalf("testenv: sudo rule for %s: %v (is sudo installed?)", u.Name, err)
	}
	t.Cleanup(func() { os.Remove(path) })
	if out, err := exec.Command("visudo", "-c", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("testenv: visudo -c %s: %v: %s", path, err, out)
	}
}

// childPIDs lists the processes whose parent is pid (sshd's per-connection
// processes are the listener's children).
func childPIDs(pid int) []int {
	if pid == 0 {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}
