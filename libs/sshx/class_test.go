package sshx_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/testenv"
)

// closingServer accepts TCP connections and closes them at once, before
// any SSH banner.
func closingServer(t *testing.T) string {
	t.Helper()
	return dropServer(t, false)
}

// resettingServer accepts TCP connections and resets them at once: on
// loopback the reset often arrives before the client's connect returns.
func resettingServer(t *testing.T) string {
	t.Helper()
	return dropServer(t, true)
}

func dropServer(t *testing.T, reset bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if tc, ok := c.(*net.TCPConn); ok && reset {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		}
	}()
	return ln.Addr().String()
}

// Every way a dial fails falls in its class, from real failures on
// loopback.
func TestClassOf(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	pinnedElsewhere := passwordTarget(s, 1)
	_, other := newKey(t, "ed25519", "")
	pinnedElsewhere.HostKey = sshx.HostKeyCheck{Pinned: other}
	wrongPassword := passwordTarget(s, 1)
	wrongPassword.Password = "not-the-password"
	closed := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.ClosedPort(t)))
	cases := []struct {
		name   string
		target sshx.Target
		cfg    sshx.Config
		want   sshx.FailureClass
		// preAuth: safe to dial again; overloaded: the host looks like it sheds load.
		preAuth, overloaded bool
	}{
		{"refused", sshx.Target{Addr: closed, User: "u", Password: "p", HostKey: autoAdd}, testConfig, sshx.ClassRefused, false, false},
		{"silent", sshx.Target{Addr: testenv.SilentServer(t), User: "u", Password: "p", HostKey: autoAdd},
			sshx.Config{ConnectTimeout: 300 * time.Millisecond}, sshx.ClassTimeout, false, true},
		{"closed before the banner", sshx.Target{Addr: closingServer(t), User: "u", Password: "p", HostKey: autoAdd}, testConfig, sshx.ClassReset, true, true},
		{"reset before the banner", sshx.Target{Addr: resettingServer(t), User: "u", Password: "p", HostKey: autoAdd}, testConfig, sshx.ClassReset, true, true},
		{"wrong password", wrongPassword, testConfig, sshx.ClassAuth, false, false},
		{"changed host key", pinnedElsewhere, testConfig, sshx.ClassHostKey, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			cl, err := sshx.Dial(ctx, c.target, c.cfg)
			if err == nil {
				_ = cl.Close()
				t.Fatal("Dial succeeded")
			}
			if got := sshx.ClassOf(err); got != c.want {
				t.Fatalf("ClassOf(%v) = %s, want %s", err, got, c.want)
			}
			if got := sshx.PreAuth(err); got != c.preAuth {
				t.Errorf("PreAuth(%v) = %v", err, got)
			}
			if got := sshx.Overloaded(err); got != c.overloaded {
				t.Errorf("Overloaded(%v) = %v", err, got)
			}
		})
	}
	if got := sshx.ClassOf(context.Canceled); got != sshx.ClassOther {
		t.Errorf("ClassOf(context.Canceled) = %s", got)
	}
	if sshx.PreAuth(context.Canceled) || sshx.Overloaded(context.Canceled) {
		t.Error("a canceled dial taken for a shed handshake")
	}
	if got := sshx.ClassOf(&sshx.DialError{Failure: sshx.Unreachable, Err: errors.New("no route")}); got != sshx.ClassOther {
		t.Errorf("ClassOf(no route) = %s", got)
	}
}
