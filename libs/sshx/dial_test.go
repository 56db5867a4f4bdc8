package sshx_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/testenv"
	"github.com/testum/testum/libs/testum"
)

func TestDialSilentServerIsUnreachableWithinConnectTimeout(t *testing.T) {
	t.Parallel()
	addr := testenv.SilentServer(t)
	cfg := sshx.Config{ConnectTimeout: time.Second}
	target := sshx.Target{Addr: addr, User: "nobody", Password: "x", HostKey: autoAdd}

	start := time.Now()
	de := dialError(t, target, cfg, sshx.Unreachable)
	if took := time.Since(start); took > cfg.ConnectTimeout+5*time.Second {
		t.Fatalf("Dial took %v with a connect timeout of %v", took, cfg.ConnectTimeout)
	}
	if !strings.Contains(de.Error(), "no SSH banner within 1s") {
		t.Fatalf("message %q does not say that no banner came", de)
	}
	if de.Hop != "" || de.Addr != addr {
		t.Fatalf("DialError names hop %q addr %q, want the target %s", de.Hop, de.Addr, addr)
	}
}

func TestDialReturnsWhenContextEndsMidHandshake(t *testing.T) {
	t.Parallel()
	addr := testenv.SilentServer(t)
	// The connect timeout is far away: only ctx can end these dials soon.
	cfg := sshx.Config{ConnectTimeout: 10 * time.Minute}
	target := sshx.Target{Addr: addr, User: "nobody", Password: "x", HostKey: autoAdd}

	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := sshx.Dial(ctx, target, cfg)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Dial: %v, want context.DeadlineExceeded", err)
		}
		var de *sshx.DialError
		if errors.As(err, &de) {
			t.Fatalf("an ended context reported as host failure %s", de.Failure)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		timer := time.AfterFunc(300*time.Millisecond, cancel) // lets the TCP connect finish first
		defer timer.Stop()
		done := make(chan error, 1)
		go func() {
			_, err := sshx.Dial(ctx, target, cfg)
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Dial: %v, want context.Canceled", err)
			}
		case <-time.After(waitFor):
			t.Fatal("Dial did not return after its context was canceled")
		}
	})
}

func TestDialUnreachable(t *testing.T) {
	t.Parallel()
	port := testenv.ClosedPort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	de := dialError(t, sshx.Target{Addr: addr, User: "u", Password: "p", HostKey: autoAdd}, testConfig, sshx.Unreachable)
	if !strings.HasSuffix(de.Error(), ": connection refused") {
		t.Fatalf("message %q, want connection refused", de)
	}

	// Depending on the routes, a TEST-NET-1 address is refused by the
	// kernel (no route) or never answers (timeout): unreachable either way.
	de = dialError(t, sshx.Target{Addr: "192.0.2.1:22", User: "u", HostKey: autoAdd}, sshx.Config{ConnectTimeout: time.Second}, sshx.Unreachable)
	t.Logf("no route: %v", de)

	de = dialError(t, sshx.Target{Addr: "nowhere.invalid:22", User: "u", HostKey: autoAdd}, sshx.Config{ConnectTimeout: time.Second}, sshx.Unreachable)
	t.Logf("unknown name: %v", de)
}

func TestAuth(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)

	t.Run("password", func(t *testing.T) {
		c := dial(t, passwordTarget(s, 1), testConfig)
		if out, _, _ := run(t, c, "id -un"); strings.TrimSpace(out) != s.PasswordUser.Name {
			t.Fatalf("logged in as %q, want %s", out, s.PasswordUser.Name)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		target := passwordTarget(s, 1)
		target.Password = "not-" + target.Password + "-at-all"
		de := dialError(t, target, testConfig, sshx.AuthFailed)
		if !strings.Contains(de.Error(), "authentication failed (tried: password") {
			t.Fatalf("message %q does not say which methods failed", de)
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		target := passwordTarget(s, 1)
		target.User = "no-such-user-here"
		_ = dialError(t, target, testConfig, sshx.AuthFailed)
	})
	t.Run("no credentials", func(t *testing.T) {
		target := passwordTarget(s, 1)
		target.Password = ""
		de := dialError(t, target, testConfig, sshx.AuthFailed)
		t.Logf("no credentials: %v", de)
	})
	t.Run("harness key user", func(t *testing.T) {
		c := dial(t, keyTarget(s, 1), testConfig)
		if out, _, _ := run(t, c, "id -un"); strings.TrimSpace(out) != s.KeyUser.Name {
			t.Fatalf("logged in as %q, want %s", out, s.KeyUser.Name)
		}
	})
	t.Run("shared signer", func(t *testing.T) {
		target := sshx.Target{Addr: hostAddr(s, 2), User: s.KeyUser.Name, Signer: s.KeyUser.Key, HostKey: autoAdd}
		dial(t, target, testConfig)
	})

	const passphrase = "sshx-test passphrase"
	u := s.NewUser(t)
	for _, kind := range []string{"ed25519", "ecdsa", "rsa"} {
		for _, pass := range []string{"", passphrase} {
			name := kind
			if pass != "" {
				name += " with passphrase"
			}
			t.Run(name, func(t *testing.T) {
				pemKey, pub := newKey(t, kind, pass)
				s.AuthorizeKey(t, u, pub)
				target := sshx.Target{Addr: hostAddr(s, 3), User: u.Name, PrivateKey: pemKey, Passphrase: []byte(pass), HostKey: autoAdd}
				c := dial(t, target, testConfig)
				if out, _, _ := run(t, c, "id -un"); strings.TrimSpace(out) != u.Name {
					t.Fatalf("logged in as %q, want %s", out, u.Name)
				}
			})
		}
	}
	t.Run("wrong passphrase", func(t *testing.T) {
		pemKey, pub := newKey(t, "ed25519", passphrase)
		s.AuthorizeKey(t, u, pub)
		target := sshx.Target{Addr: hostAddr(s, 3), User: u.Name, PrivateKey: pemKey, Passphrase: []byte("not the passphrase"), HostKey: autoAdd}
		de := dialError(t, target, testConfig, sshx.AuthFailed)
		if !errors.Is(de, sshx.ErrWrongPassphrase) {
			t.Fatalf("error %v does not wrap ErrWrongPassphrase", de)
		}
	})
	t.Run("missing passphrase", func(t *testing.T) {
		pemKey, _ := newKey(t, "ed25519", passphrase)
		target := sshx.Target{Addr: hostAddr(s, 3), User: u.Name, PrivateKey: pemKey, HostKey: autoAdd}
		de := dialError(t, target, testConfig, sshx.AuthFailed)
		if !errors.Is(de, sshx.ErrPassphraseRequired) {
			t.Fatalf("error %v does not wrap ErrPassphraseRequired", de)
		}
	})
	t.Run("key not authorized", func(t *testing.T) {
		pemKey, _ := newKey(t, "ed25519", "")
		target := sshx.Target{Addr: hostAddr(s, 3), User: u.Name, PrivateKey: pemKey, HostKey: autoAdd}
		de := dialError(t, target, testConfig, sshx.AuthFailed)
		if !strings.Contains(de.Error(), "tried: publickey") {
			t.Fatalf("message %q does not say publickey failed", de)
		}
	})
}

func TestHostKeyPolicy(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)

	t.Run("auto_add accepts on first contact", func(t *testing.T) {
		c := dial(t, passwordTarget(s, 1), testConfig)
		if !c.FirstContact() {
			t.Fatal("FirstContact = false with nothing pinned under auto_add")
		}
		if want := hostKeyOfType(t, s, ssh.KeyAlgoED25519); !sameKey(c.HostKey(), want) {
			t.Fatalf("first contact got %s %s, want the ed25519 key", c.HostKey().Type(), sshx.Fingerprint(c.HostKey()))
		}
	})
	t.Run("strict rejects an unknown host", func(t *testing.T) {
		target := passwordTarget(s, 1)
		target.HostKey = sshx.HostKeyCheck{Policy: testum.HostKeyStrict}
		de := dialError(t, target, testConfig, sshx.HostKeyRejected)
		if de.Offered == nil {
			t.Fatal("Offered is nil")
		}
		if msg := de.Error(); !strings.Contains(msg, "unknown host") || !strings.Contains(msg, "strict") ||
			!strings.Contains(msg, sshx.Fingerprint(de.Offered)) {
			t.Fatalf("message %q does not say the host is unknown under the strict policy", msg)
		}
	})
	t.Run("empty policy is strict", func(t *testing.T) {
		target := passwordTarget(s, 1)
		target.HostKey = sshx.HostKeyCheck{}
		_ = dialError(t, target, testConfig, sshx.HostKeyRejected)
	})

	// With a key pinned the host must present that very key, whatever the
	// policy and although it has keys of other types.
	for _, k := range s.HostKeys {
		for _, policy := range []testum.HostKeyPolicy{testum.HostKeyStrict, testum.HostKeyAutoAdd} {
			t.Run("pinned "+k.Type()+" "+string(policy), func(t *testing.T) {
				target := passwordTarget(s, 2)
				target.HostKey = sshx.HostKeyCheck{Policy: policy, Pinned: k}
				c := dial(t, target, testConfig)
				if !sameKey(c.HostKey(), k) {
					t.Fatalf("host presented %s %s, want the pinned %s", c.HostKey().Type(), sshx.Fingerprint(c.HostKey()), sshx.Fingerprint(k))
				}
				if c.FirstContact() {
					t.Fatal("FirstContact = true with a pinned key")
				}
			})
		}
	}

	t.Run("pinned key differs", func(t *testing.T) {
		for _, kind := range []string{"ed25519", "ecdsa", "rsa"} {
			_, other := newKey(t, kind, "")
			target := passwordTarget(s, 1)
			target.HostKey = sshx.HostKeyCheck{Policy: testum.HostKeyAutoAdd, Pinned: other}
			de := dialError(t, target, testConfig, sshx.HostKeyRejected)
			if de.Offered == nil || de.Offered.Type() != other.Type() {
				t.Fatalf("Offered = %v, want the host's %s key", de.Offered, other.Type())
			}
			want := "host key changed: pinned " + sshx.Fingerprint(other) + ", offered " + sshx.Fingerprint(de.Offered)
			if !strings.Contains(de.Error(), want) {
				t.Fatalf("message %q, want it to contain %q", de, want)
			}
		}
	})
	t.Run("host has no key of the pinned type", func(t *testing.T) {
		_, other := newKey(t, "ecdsa", "")
		for _, k := range s.HostKeys {
			if k.Type() == other.Type() {
				t.Skipf("the sshd has a %s key", k.Type())
			}
		}
		target := passwordTarget(s, 1)
		target.HostKey = sshx.HostKeyCheck{Policy: testum.HostKeyAutoAdd, Pinned: other}
		de := dialError(t, target, testConfig, sshx.HostKeyRejected)
		if !strings.Contains(de.Error(), "host key changed") {
			t.Fatalf("message %q does not say the key changed", de)
		}
	})
}

// TestHostKeyChangeIsNeverAcceptedAutomatically: after the host's keys
// change, a key pinned at first contact is refused even under auto_add.
func TestHostKeyChangeIsNeverAcceptedAutomatically(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	c := dial(t, passwordTarget(s, 1), testConfig)
	pinned := c.HostKey()
	_ = c.Close()

	s.RestartWithNewHostKeys(t)
	target := passwordTarget(s, 1)
	target.HostKey = sshx.HostKeyCheck{Policy: testum.HostKeyAutoAdd, Pinned: pinned}
	de := dialError(t, target, testConfig, sshx.HostKeyRejected)
	if sameKey(de.Offered, pinned) || de.Offered == nil {
		t.Fatalf("Offered = %v, want the new key", de.Offered)
	}
	if !strings.Contains(de.Error(), "pinned "+sshx.Fingerprint(pinned)) {
		t.Fatalf("message %q does not name the pinned key", de)
	}
}

func TestJumpChain(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	ed := hostKeyOfType(t, s, ssh.KeyAlgoED25519)
	rsaKey := hostKeyOfType(t, s, ssh.KeyAlgoRSA)

	// a (password, auto_add) → b (key, pinned ed25519) → target (password, pinned rsa)
	chain := func() (a, b, target *sshx.Target) {
		a = &sshx.Target{Addr: hostAddr(s, 1), User: s.PasswordUser.Name, Password: s.PasswordUser.Password, HostKey: autoAdd}
		b = &sshx.Target{Addr: hostAddr(s, 2), User: s.KeyUser.Name, PrivateKey: s.KeyUser.KeyPEM,
			HostKey: sshx.HostKeyCheck{Policy: testum.HostKeyStrict, Pinned: ed}, Jump: a}
		target = &sshx.Target{Addr: hostAddr(s, 3), User: s.PasswordUser.Name, Password: s.PasswordUser.Password,
			HostKey: sshx.HostKeyCheck{Policy: testum.HostKeyStrict, Pinned: rsaKey}, Jump: b}
		return a, b, target
	}

	t.Run("two jumps", func(t *testing.T) {
		_, _, target := chain()
		c := dial(t, *target, testConfig)
		out, _, _ := run(t, c, `echo "$SSH_CONNECTION"`)
		if f := strings.Fields(out); len(f) != 4 || f[2] != hostIP(s, 3) {
			t.Fatalf("SSH_CONNECTION = %q, want the server address %s", out, hostIP(s, 3))
		}
		hops := c.Hops()
		if len(hops) != 3 {
			t.Fatalf("Hops = %d, want 3", len(hops))
		}
		for i, want := range []string{hostAddr(s, 1), hostAddr(s, 2), hostAddr(s, 3)} {
			if hops[i].Addr != want {
				t.Fatalf("hop %d is %s, want %s", i, hops[i].Addr, want)
			}
		}
		if !hops[0].FirstContact || hops[1].FirstContact || hops[2].FirstContact {
			t.Fatalf("FirstContact per hop = %v %v %v, want true false false", hops[0].FirstContact, hops[1].FirstContact, hops[2].FirstContact)
		}
		if !sameKey(hops[1].HostKey, ed) || !sameKey(hops[2].HostKey, rsaKey) || !sameKey(c.HostKey(), rsaKey) {
			t.Fatal("a hop did not present its pinned key")
		}
	})
	t.Run("first jump unreachable", func(t *testing.T) {
		a, _, target := chain()
		a.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.ClosedPort(t)))
		de := dialError(t, *target, testConfig, sshx.Unreachable)
		if de.Hop != "jump "+a.Addr || de.Addr != target.Addr {
			t.Fatalf("DialError hop %q addr %q: %v", de.Hop, de.Addr, de)
		}
	})
	t.Run("second jump wrong password", func(t *testing.T) {
		_, b, target := chain()
		b.PrivateKey = nil
		b.User, b.Password = s.PasswordUser.Name, "wrong-"+s.PasswordUser.Password
		de := dialError(t, *target, testConfig, sshx.AuthFailed)
		if de.Hop != "jump "+b.Addr {
			t.Fatalf("DialError hop %q, want jump %s: %v", de.Hop, b.Addr, de)
		}
	})
	t.Run("second jump host key changed", func(t *testing.T) {
		_, b, target := chain()
		_, other := newKey(t, "ed25519", "")
		b.HostKey.Pinned = other
		de := dialError(t, *target, testConfig, sshx.HostKeyRejected)
		if de.Hop != "jump "+b.Addr || !sameKey(de.Offered, ed) {
			t.Fatalf("DialError hop %q offered %v: %v", de.Hop, de.Offered, de)
		}
	})
	t.Run("target host key unknown under strict", func(t *testing.T) {
		_, _, target := chain()
		target.HostKey.Pinned = nil
		de := dialError(t, *target, testConfig, sshx.HostKeyRejected)
		if de.Hop != "" {
			t.Fatalf("DialError hop %q, want the target: %v", de.Hop, de)
		}
	})
	t.Run("target refuses through the jump", func(t *testing.T) {
		_, b, target := chain()
		target.Addr = net.JoinHostPort(hostIP(s, 3), strconv.Itoa(testenv.ClosedPort(t)))
		de := dialError(t, *target, testConfig, sshx.Unreachable)
		if de.Hop != "" || !strings.Contains(de.Error(), "jump "+b.Addr+" could not connect") {
			t.Fatalf("DialError hop %q: %v", de.Hop, de)
		}
	})
	t.Run("silent target through the jump", func(t *testing.T) {
		_, _, target := chain()
		target.Addr = testenv.SilentServer(t)
		cfg := testConfig
		cfg.ConnectTimeout = time.Second
		de := dialError(t, *target, cfg, sshx.Unreachable)
		if de.Hop != "" || !strings.Contains(de.Error(), "no SSH banner within 1s") {
			t.Fatalf("DialError hop %q: %v", de.Hop, de)
		}
	})
}
