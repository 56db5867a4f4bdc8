package sshx_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/testenv"
)

// listenOn opens a TCP listener on ip and returns its address and a probe
// that reports whether anything connected to it so far. A connect(2) that
// happened is in the accept queue by the time Dial returns.
func listenOn(t *testing.T, ip string) (addr string, connected func() bool) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), func() bool {
		_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(50 * time.Millisecond))
		c, err := ln.Accept()
		if err == nil {
			_ = c.Close()
			return true
		}
		return false
	}
}

func denyList(t *testing.T, s string) sshx.DenyList {
	t.Helper()
	d, err := sshx.ParseDenyList(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDialDeniedTargetIsNotDialed: an address in a denied range, given as
// is or by a name that resolves into it, is never connected to.
func TestDialDeniedTargetIsNotDialed(t *testing.T) {
	t.Parallel()
	addr, connected := listenOn(t, "127.0.0.5")
	cfg := testConfig
	cfg.Deny = denyList(t, "127.0.0.5/32")
	target := sshx.Target{ID: 7, Addr: addr, User: "nobody", Password: "x", HostKey: autoAdd}
	de := dialError(t, target, cfg, sshx.Unreachable)
	if !errors.Is(de, sshx.ErrTargetDenied) || !strings.Contains(de.Error(), "127.0.0.5 is denied by the target policy") ||
		!strings.Contains(de.Error(), "not dialed") {
		t.Fatalf("message %q does not say the policy refused the address", de)
	}
	if de.HopID != 7 || de.Hop != "" {
		t.Fatalf("DialError names hop %q id %d, want the target (7)", de.Hop, de.HopID)
	}
	if connected() {
		t.Fatal("the denied address was connected to")
	}

	// A host name is checked on what it resolves to.
	laddr, lconnected := listenOn(t, "127.0.0.1")
	_, port, _ := net.SplitHostPort(laddr)
	cfg.Deny = denyList(t, "127.0.0.1/32,::1/128")
	de = dialError(t, sshx.Target{Addr: net.JoinHostPort("localhost", port), User: "nobody", Password: "x", HostKey: autoAdd}, cfg, sshx.Unreachable)
	if !errors.Is(de, sshx.ErrTargetDenied) {
		t.Fatalf("localhost: %v, want the policy to refuse it", de)
	}
	if lconnected() {
		t.Fatal("a name resolving into a denied range was connected to")
	}

	// The default policy refuses the metadata address without a packet.
	cfg.Deny = nil
	de = dialError(t, sshx.Target{Addr: "169.254.169.254:22", User: "nobody", Password: "x", HostKey: autoAdd}, cfg, sshx.Unreachable)
	if !errors.Is(de, sshx.ErrTargetDenied) {
		t.Fatalf("169.254.169.254: %v, want the default policy to refuse it", de)
	}
}

// TestDialDeniedThroughJump: the jump host is not asked to connect to a
// denied address, and an allowed one works with the same policy.
func TestDialDeniedThroughJump(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	addr, connected := listenOn(t, "127.0.0.6")
	cfg := testConfig
	cfg.Deny = denyList(t, "127.0.0.6/32")
	jump := passwordTarget(s, 1)
	jump.ID = 1
	target := sshx.Target{ID: 2, Addr: addr, User: s.PasswordUser.Name, Password: s.PasswordUser.Password, HostKey: autoAdd, Jump: &jump}
	de := dialError(t, target, cfg, sshx.Unreachable)
	if !errors.Is(de, sshx.ErrTargetDenied) || de.HopID != 2 || de.Hop != "" {
		t.Fatalf("through the jump: %v (hop %q id %d), want the policy to refuse the target", de, de.Hop, de.HopID)
	}
	if connected() {
		t.Fatal("the jump host was asked to connect to a denied address")
	}

	// The jump host itself in a denied range.
	cfg.Deny = denyList(t, hostIP(s, 1)+"/32")
	target = passwordTarget(s, 2)
	target.ID, target.Jump = 2, &jump
	de = dialError(t, target, cfg, sshx.Unreachable)
	if !errors.Is(de, sshx.ErrTargetDenied) || de.HopID != 1 || de.Hop != "jump "+jump.Addr {
		t.Fatalf("denied jump: %v (hop %q id %d)", de, de.Hop, de.HopID)
	}

	// Other addresses pass, and every hop says which target it was.
	cfg.Deny = denyList(t, "127.0.0.6/32")
	c := dial(t, target, cfg)
	hops := c.Hops()
	if len(hops) != 2 || hops[0].ID != 1 || hops[1].ID != 2 || !hops[0].FirstContact || !hops[1].FirstContact {
		t.Fatalf("hops = %+v, want ids 1 then 2, both first contacts", hops)
	}
}
