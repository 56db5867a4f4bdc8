// Package sshx is the SSH client side of the executor: it dials a host
// (through a chain of jump hosts if asked), authenticates, applies the host
// key policy and pinning, runs commands with their output streamed as it
// arrives, and really ends the remote process when a command is canceled or
// times out.
//
// Every phase has a bound. The TCP connect, the SSH handshake and the
// authentication of each hop share Config.ConnectTimeout (the
// ssh.ClientConfig.Timeout of golang.org/x/crypto/ssh bounds only the TCP
// dial, and a server that accepts TCP but never speaks would block the
// handshake forever); a running connection is watched by keepalives; a
// canceled command is signalled (TERM and/or KILL) before its session is
// closed, because without a PTY closing the session, or even the whole
// connection, leaves the remote process running.
//
// Dial failures are *DialError values whose Failure names the host state
// (unreachable, auth_failed, hostkey_rejected). Their messages are written
// for operators and never contain a password, a passphrase or key material.
package sshx

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/testum"
)

// Defaults applied by Config.CheckAndSetDefaults.
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultKeepAlive      = 15 * time.Second

	// keepAliveMaxMissed is how many keepalives in a row may go unanswered;
	// when the next one is due the connection is considered lost (OpenSSH's
	// ServerAliveCountMax semantics).
	keepAliveMaxMissed = 3

	// killWait bounds how long Run waits, after sending KILL, for the host
	// to report that the command ended before it closes the session anyway.
	killWait = 5 * time.Second

	// maxHops bounds a jump chain (and so a cycle of Jump pointers).
	maxHops = 8
)

// Config holds the timing of connections and commands. The zero value is
// usable: CheckAndSetDefaults fills in the defaults.
type Config struct {
	// ConnectTimeout bounds, for each hop, the TCP connect AND the SSH
	// handshake and authentication together. Default 10s.
	ConnectTimeout time.Duration
	// KeepAlive is the interval of keepalive@openssh.com requests on an
	// established connection. When three in a row go unanswered the
	// connection is considered lost (ErrConnectionLost). Default 15s.
	KeepAlive time.Duration
	// KillGrace is what Run does when its context ends: 0 sends KILL at
	// once; > 0 sends TERM, waits up to KillGrace for the command to end,
	// then sends KILL.
	KillGrace time.Duration
	// Deny lists the address ranges no hop may be dialed at (the target
	// policy). nil means DefaultDeny; an empty, non-nil list denies nothing.
	Deny DenyList
}

// CheckAndSetDefaults rejects negative durations and fills in defaults.
func (c *Config) CheckAndSetDefaults() error {
	switch {
	case c.ConnectTimeout < 0:
		return fmt.Errorf("sshx: negative connect timeout %v", c.ConnectTimeout)
	case c.KeepAlive < 0:
		return fmt.Errorf("sshx: negative keepalive interval %v", c.KeepAlive)
	case c.KillGrace < 0:
		return fmt.Errorf("sshx: negative kill grace %v", c.KillGrace)
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.Deny == nil {
		c.Deny = DefaultDeny()
	}
	return nil
}

// Target is one host to log in to.
type Target struct {
	// ID is the caller's name for this host (testum: the platform id). Dial
	// does not read it; it comes back in Hop.ID and DialError.HopID so that
	// the caller can pin or record keys of every hop on its own record.
	ID       int64
	Addr     string // host:port (":22" is added when the port is missing)
	User     string
	Password string // password auth; also answers keyboard-interactive password prompts
	// Signer, when set, is used for public-key auth instead of parsing
	// PrivateKey. A fan-out over many hosts with one credential should parse
	// the key once (ParsePrivateKey; a passphrase costs a bcrypt run) and
	// share the Signer.
	Signer     ssh.Signer
	PrivateKey []byte // PEM: OpenSSH, PKCS#1, PKCS#8 or SEC1; ed25519, ecdsa or rsa
	Passphrase []byte
	HostKey    HostKeyCheck
	// Jump, when set, is the host through which Addr is reached
	// (ProxyJump). It may have its own Jump: a chain, outermost last.
	Jump *Target
}

// HostKeyCheck is the host key policy of one host.
type HostKeyCheck struct {
	// Policy applies when nothing is pinned: auto_add accepts the key the
	// host presents (the caller then pins it); strict, or "", rejects it.
	Policy testum.HostKeyPolicy
	// Pinned is the key the host must present; nil when nothing is pinned
	// yet. A different key is always rejected, whatever the policy.
	Pinned ssh.PublicKey
}

// Hop is what Dial learned about one host of the chain.
type Hop struct {
	ID      int64 // the Target.ID of this host
	Addr    string
	HostKey ssh.PublicKey // the key the host presented
	// FirstContact is true when nothing was pinned and auto_add accepted
	// HostKey: the caller should pin it.
	FirstContact bool
}

// Failure says why a dial failed; its values equal testum.HostState values.
type Failure string

// The ways a dial fails.
const (
	Unreachable     Failure = Failure(testum.HostUnreachable)
	AuthFailed      Failure = Failure(testum.HostAuthFailed)
	HostKeyRejected Failure = Failure(testum.HostHostKeyRejected)
)

// HostState is the host state this failure ends in.
func (f Failure) HostState() testum.HostState { return testum.HostState(f) }

// DialError is a failure to reach, verify or log in to a host. Err reads as
// plain words ("connection refused", "no SSH banner within 10s") and wraps
// the underlying cause.
type DialError struct {
	Failure Failure
	Addr    string // the target's address
	// Hop names the jump host that failed ("jump 127.0.1.2:22"); "" when
	// the target itself failed.
	Hop string
	// HopID is the Target.ID of the host that failed: the target's own or
	// that of the jump host Hop names.
	HopID int64
	// Offered is the host key the failing host presented, for
	// hostkey_rejected (so an administrator can accept it); nil if the
	// host offered no key of the pinned type.
	Offered ssh.PublicKey
	Err     error

	timedOut bool // the hop's deadline passed (ClassOf)
	// connected: the TCP connection (or the forward through the previous
	// hop) was open and the SSH handshake had begun (PreAuth, Overloaded).
	connected bool
}

func (e *DialError) Error() string {
	if e.Hop != "" {
		return "ssh " + e.Addr + ": " + e.Hop + ": " + e.Err.Error()
	}
	return "ssh " + e.Addr + ": " + e.Err.Error()
}

func (e *DialError) Unwrap() error { return e.Err }

// ErrConnectionLost is returned by Run when keepalives go unanswered or the
// connection drops while a command runs: whether the command finished, and
// how, is unknown.
var ErrConnectionLost = errors.New("connection lost")

// ErrNotStarted is wrapped by Run's error when the command certainly did
// not start on the host (no session could be opened, or the host refused
// to start it): running it again elsewhere cannot run it twice.
var ErrNotStarted = errors.New("the command did not start")

// notStartedError keeps the message of its cause and adds ErrNotStarted to
// the chain.
type notStartedError struct{ cause error }

func (e *notStartedError) Error() string   { return e.cause.Error() }
func (e *notStartedError) Unwrap() []error { return []error{e.cause, ErrNotStarted} }

func notStarted(err error) error { return &notStartedError{cause: err} }

// Errors of ParsePrivateKey.
var (
	ErrNotAKey            = errors.New("not a private key")
	ErrUnsupportedKey     = errors.New("unsupported private key")
	ErrPassphraseRequired = errors.New("the private key is protected by a passphrase and none was given")
	ErrWrongPassphrase    = errors.New("wrong passphrase for the private key")
	ErrWeakKey            = errors.New("the private key is too weak")
	ErrKeyTooLarge        = errors.New("the private key is too large")
)

// ErrTargetDenied is wrapped by the error of a dial refused by the target
// policy (Config.Deny): no connection was attempted.
var ErrTargetDenied = errors.New("address denied by the target policy")

// plainError is an error whose message is written for operators while its
// chain still holds the library or system cause for errors.Is and logs.
type plainError struct {
	msg   string
	cause error
}

func (e *plainError) Error() string { return e.msg }
func (e *plainError) Unwrap() error { return e.cause }

func plain(cause error, format string, args ...any) error {
	return &plainError{msg: fmt.Sprintf(format, args...), cause: cause}
}
