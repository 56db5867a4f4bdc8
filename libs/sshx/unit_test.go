package sshx

import (
	"errors"
	"fmt"
	"io"
	"net"
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
	answer := answerPasswordPrompts("s3cret")
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
}

func TestDescribeNetError(t *testing.T) {
	op := func(err error) error { return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)} }
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
		f []int
	}
	u := uncomparable{Writer: io.Discard}
	if sameWriter(u, u) {
		t.Fatal("an uncomparable writer compared equal")
	}
}
