package sshx

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	var c Config
	if err := c.CheckAndSetDefaults(); err != nil {
		t.Fatal(err)
	}
	if c.ConnectTimeout != DefaultConnectTimeout || c.KeepAlive != DefaultKeepAlive || c.KillGrace != 0 {
		t.Fatalf("defaults = %+v", c)
	}
	for _, bad := range []Config{{ConnectTimeout: -1}, {KeepAlive: -1}, {KillGrace: -time.Second}} {
		if err := bad.CheckAndSetDefaults(); err == nil {
			t.Errorf("CheckAndSetDefaults(%+v) accepted a negative duration", bad)
		}
	}
}

func TestHopChain(t *testing.T) {
	a := &Target{Addr: "127.0.1.1"}
	b := &Target{Addr: "127.0.1.2:2222", Jump: a}
	chain, err := hopChain(&Target{Addr: "[::1]:22", Jump: b})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range chain {
		got = append(got, h.Addr)
	}
	if want := "127.0.1.1:22 127.0.1.2:2222 [::1]:22"; strings.Join(got, " ") != want {
		t.Fatalf("chain = %v, want %s", got, want)
	}
	if a.Addr != "127.0.1.1" {
		t.Fatalf("hopChain changed the caller's target: %q", a.Addr)
	}

	loop := &Target{Addr: "127.0.0.1:22"}
	loop.Jump = loop
	if _, err := hopChain(loop); err == nil {
		t.Fatal("a jump cycle was accepted")
	}
	if _, err := hopChain(&Target{Addr: "h:22", HostKey: HostKeyCheck{Policy: "trust_me"}}); err == nil {
		t.Fatal("an unknown host key policy was accepted")
	}
}

func TestAnswerPasswordPrompts(t *testing.T) {
	var refused []string
	answer := answerPasswordPrompts("s3cret", func(q string) { refused = append(refused, q) })
	got, err := answer("", "", nil, nil)
	if err != nil || len(got) != 0 {
		t.Fatalf("informational round: %v, %v", got, err)
	}
	got, err = answer("", "", []string{"Login: ", "Password: "}, []bool{true, false})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != "" || got[1] != "s3cret" {
		t.Fatalf("answers = %q", got)
	}
	for i := 0; i < maxPromptRounds; i++ {
		_, err = answer("", "", []string{"Password: "}, []bool{false})
	}
	if err == nil {
		t.Fatal("an endless keyboard-interactive exchange was not cut short")
	}

	// Only a hidden prompt that asks for the login password gets it.
	for _, tc := range []struct {
		prompt string
		answer bool
	}{
		{"Password: ", true},
		{"password:", true},
		{"testum-pw-1a2b@127.0.0.1's password: ", true},
		{"Password for ops@EXAMPLE.ORG: ", true},
		{"Пароль: ", true},
		{"Verification code: ", false},
		{"Enter PASSCODE: ", false},
		{"One-time password (OATH) for `ops': ", false},
		{"OTP: ", false},
		{"New password: ", false},
		{"Retype new password: ", false},
		{"Token: ", false},
		{"", false},
	} {
		t.Run(tc.prompt, func(t *testing.T) {
			refused = nil
			got, err := answerPasswordPrompts("s3cret", func(q string) { refused = append(refused, q) })("", "", []string{tc.prompt}, []bool{false})
			if tc.answer {
				if err != nil || len(got) != 1 || got[0] != "s3cret" {
					t.Fatalf("%q: answers %q, err %v; want the password", tc.prompt, got, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("%q: answered %q, want the method to fail", tc.prompt, got)
			}
			for _, a := range got {
				if a == "s3cret" {
					t.Fatalf("%q: the password was given", tc.prompt)
				}
			}
			if strings.Contains(err.Error(), "s3cret") || len(refused) != 1 || refused[0] != tc.prompt {
				t.Fatalf("%q: err %v, refused %q", tc.prompt, err, refused)
			}
		})
	}
	// A visible question next to a hidden code: nothing is sent at all.
	if got, err := answerPasswordPrompts("s3cret", nil)("", "", []string{"Password: ", "Verification code: "}, []bool{false, false}); err == nil {
		t.Fatalf("a password and a code asked together: answered %q", got)
	}
}

func TestParseDenyList(t *testing.T) {
	d, err := ParseDenyList(" 169.254.0.0/16, 10.1.2.3 ,fd00:ec2::254/128,::ffff:192.0.2.0/120")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.String(), "169.254.0.0/16,10.1.2.3/32,fd00:ec2::254/128,192.0.2.0/24"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	for addr, denied := range map[string]bool{
		"169.254.169.254":        true,
		"::ffff:169.254.169.254": true,
		"10.1.2.3":               true,
		"10.1.2.4":               false,
		"fd00:ec2::254":          true,
		"fd00:ec2::253":          false,
		"192.0.2.77":             true,
		"127.0.0.1":              false,
	} {
		if _, got := d.Denying(netip.MustParseAddr(addr)); got != denied {
			t.Errorf("Denying(%s) = %v, want %v", addr, got, denied)
		}
	}
	none, err := ParseDenyList("none")
	if err != nil || none == nil || len(none) != 0 || none.String() != "none" {
		t.Fatalf("none = %#v, %v; want an empty, non-nil list", none, err)
	}
	for _, bad := range []string{"", " , ", "169.254.0.0/33", "example.org", "10.0.0.0/8,nope"} {
		if _, err := ParseDenyList(bad); err == nil {
			t.Errorf("ParseDenyList(%q) accepted", bad)
		}
	}
	def := DefaultDeny()
	for _, addr := range []string{"169.254.169.254", "fd00:ec2::254", "fe80::1"} {
		if err := def.CheckHost(addr); !errors.Is(err, ErrTargetDenied) {
			t.Errorf("the default policy lets %s through: %v", addr, err)
		}
	}
	if err := def.CheckHost("[fe80::1]"); !errors.Is(err, ErrTargetDenied) {
		t.Errorf("a bracketed address went through: %v", err)
	}
	for _, host := range []string{"127.0.0.1", "10.0.0.1", "metadata.google.internal", "::1"} {
		if err := def.CheckHost(host); err != nil {
			t.Errorf("CheckHost(%s): %v", host, err)
		}
	}
	var c Config
	if err := c.CheckAndSetDefaults(); err != nil || c.Deny.String() != DefaultDenyRanges {
		t.Fatalf("a zero Config denies %s (%v), want the defaults", c.Deny, err)
	}
}

func TestDescribeNetError(t *testing.T) {
	op := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}
	}
	tests := []struct {
		err  error
		want string
	}{
		{op(syscall.ECONNREFUSED), "connection refused"},
		{op(syscall.EHOSTUNREACH), "no route to host"},
		{op(syscall.ENETUNREACH), "network is unreachable"},
		{op(syscall.ECONNRESET), "connection reset by the host"},
		{fmt.Errorf("ssh: handshake failed: %w", io.EOF), "connection closed by the host"},
		{&net.DNSError{Name: "nowhere.invalid", Err: "no such host", IsNotFound: true}, `unknown host name "nowhere.invalid"`},
		{errors.New("ssh: something odd"), "something odd"},
	}
	for _, tc := range tests {
		if got := describeNetError(tc.err); got != tc.want {
			t.Errorf("describeNetError(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestDisconnectReason(t *testing.T) {
	reason, ok := disconnectReason(errors.New("ssh: handshake failed: ssh: disconnect, reason 2: Too many authentication failures"))
	if !ok || reason != "Too many authentication failures" {
		t.Fatalf("disconnectReason = %q, %v", reason, ok)
	}
	if _, ok := disconnectReason(io.EOF); ok {
		t.Fatal("EOF read as a disconnect")
	}
}

func TestSameWriter(t *testing.T) {
	var b strings.Builder
	if !sameWriter(&b, &b) {
		t.Fatal("one writer not recognised")
	}
	type uncomparable struct {
		io.Writer
		_ []int
	}
	u := uncomparable{Writer: io.Discard}
	if sameWriter(u, u) {
		t.Fatal("an uncomparable writer compared equal")
	}
}

// A TCP connect that ends in a reset (the host accepted, then dropped the
// connection before connect returned, as a loaded loopback often does) is a
// shed handshake, safe to dial again; a refusal is not.
func TestConnectResetIsPreAuth(t *testing.T) {
	a := &hopAttempt{target: &Target{Addr: "127.0.0.1:22"}, timeout: time.Second}
	ctx := t.Context()
	reset := a.connectError(ctx, ctx, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNRESET)})
	if !PreAuth(reset) || !Overloaded(reset) {
		t.Errorf("a reset connect: PreAuth %v, Overloaded %v, want both", PreAuth(reset), Overloaded(reset))
	}
	refused := a.connectError(ctx, ctx, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	if PreAuth(refused) || Overloaded(refused) {
		t.Errorf("a refused connect: PreAuth %v, Overloaded %v, want neither", PreAuth(refused), Overloaded(refused))
	}
}
