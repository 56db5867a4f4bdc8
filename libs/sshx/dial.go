package sshx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/testum"
)

// clientVersion names testum in the hosts' sshd logs.
const clientVersion = "SSH-2.0-testum"

// Dial connects to t, through t.Jump's chain of jump hosts when it has one
// (outermost first), checks each host's key against its HostKeyCheck and
// logs in to each with its own credentials. Each hop gets its own
// cfg.ConnectTimeout for TCP connect, handshake and authentication.
//
// A failure is a *DialError naming the failing hop. If ctx ends first the
// error wraps ctx.Err() instead (errors.Is context.Canceled or
// context.DeadlineExceeded) and is not a *DialError.
func Dial(ctx context.Context, t Target, cfg Config) (*Client, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	chain, err := hopChain(&t)
	if err != nil {
		return nil, err
	}
	target := chain[len(chain)-1].Addr

	var (
		via   *ssh.Client
		jumps []*ssh.Client
		hops  = make([]Hop, 0, len(chain))
	)
	closeJumps := func() {
		for i := len(jumps) - 1; i >= 0; i-- {
			_ = jumps[i].Close()
		}
	}
	for i := range chain {
		h := &chain[i]
		last := i == len(chain)-1
		viaName := ""
		if i > 0 {
			viaName = "jump " + chain[i-1].Addr
		}
		a := &hopAttempt{target: h, via: via, viaName: viaName, timeout: cfg.ConnectTimeout, deny: cfg.Deny}
		conn, chans, reqs, err := a.dial(ctx)
		if err != nil {
			closeJumps()
			var de *DialError
			if errors.As(err, &de) {
				de.Addr, de.HopID = target, h.ID
				if !last {
					de.Hop = "jump " + h.Addr
				}
				return nil, de
			}
			return nil, fmt.Errorf("ssh %s: connect interrupted: %w", target, err)
		}
		hops = append(hops, a.result())
		if last {
			return newClient(conn, chans, reqs, jumps, hops, cfg), nil
		}
		via = ssh.NewClient(conn, chans, reqs)
		jumps = append(jumps, via)
	}
	panic("unreachable: the chain is never empty")
}

// hopChain flattens t and its jumps into dial order (outermost jump first),
// copying each so that defaults never touch the caller's values.
func hopChain(t *Target) ([]Target, error) {
	var chain []Target
	for h := t; h != nil; h = h.Jump {
		if len(chain) == maxHops {
			return nil, fmt.Errorf("sshx: more than %d hosts in the jump chain of %s", maxHops-1, t.Addr)
		}
		c := *h
		c.Jump = nil
		if c.Addr == "" {
			return nil, errors.New("sshx: target without an address")
		}
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			c.Addr = net.JoinHostPort(c.Addr, "22")
		}
		switch c.HostKey.Policy {
		case "", testum.HostKeyStrict, testum.HostKeyAutoAdd:
		default:
			return nil, fmt.Errorf("sshx: %s: unknown host key policy %q", c.Addr, c.HostKey.Policy)
		}
		chain = append(chain, c)
	}
	slices.Reverse(chain)
	return chain, nil
}

// hopAttempt is the dialing of one host of the chain. Its host key fields
// are written by the handshake's key exchange goroutine, hence the mutex.
type hopAttempt struct {
	target  *Target
	via     *ssh.Client // nil: a direct TCP connection
	viaName string      // "jump 127.0.1.2:22" when via is set
	timeout time.Duration
	deny    DenyList

	conn *watchedConn

	mu      sync.Mutex
	hostKey ssh.PublicKey // accepted key; non-nil once authentication began
	first   bool
	allowed []string // auth methods the host accepts, as last reported
	tried   []string // auth methods that failed
	refused string   // a keyboard-interactive prompt left unanswered
}

func (a *hopAttempt) result() Hop {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Hop{ID: a.target.ID, Addr: a.target.Addr, HostKey: a.hostKey, FirstContact: a.first}
}

func (a *hopAttempt) dial(ctx context.Context) (ssh.Conn, <-chan ssh.NewChannel, <-chan *ssh.Request, error) {
	auth, err := authMethods(a.target, a.noteRefused)
	if err != nil {
		return nil, nil, nil, &DialError{Failure: AuthFailed, Err: err}
	}
	deadline := time.Now().Add(a.timeout)
	hctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	var raw net.Conn
	if a.via == nil {
		// Control sees each address the name resolved to, before connect.
		d := net.Dialer{Control: a.deny.control}
		raw, err = d.DialContext(hctx, "tcp", a.target.Addr)
	} else if err = a.deny.checkRemote(hctx, a.target.Addr); err == nil {
		raw, err = a.via.DialContext(hctx, "tcp", a.target.Addr)
	}
	if err != nil {
		return nil, nil, nil, noteTimeout(ctx, hctx, a.connectError(ctx, hctx, err))
	}

	// The kernel enforces the deadline on a TCP connection. A channel
	// through a jump host has no deadlines, and a canceled ctx must also end
	// the handshake: closing the connection when hctx ends covers both.
	_ = raw.SetDeadline(deadline)
	a.conn = &watchedConn{Conn: raw}
	fired := make(chan struct{})
	stop := context.AfterFunc(hctx, func() {
		_ = raw.Close()
		close(fired)
	})
	config := &ssh.ClientConfig{
		User:              a.target.User,
		Auth:              auth,
		HostKeyCallback:   a.checkHostKey,
		HostKeyAlgorithms: hostKeyAlgorithms(a.target.HostKey.Pinned),
		ClientVersion:     clientVersion,
		AuthCallback:      a.observeAuth,
	}
	conn, chans, reqs, err := ssh.NewClientConn(a.conn, a.target.Addr, config)
	if err == nil {
		_ = raw.SetDeadline(time.Time{})
	}
	if !stop() {
		<-fired
		if err == nil {
			_ = conn.Close()
			err = hctx.Err()
		}
	}
	if err != nil {
		return nil, nil, nil, noteTimeout(ctx, hctx, noteConnected(a.handshakeError(ctx, hctx, err)))
	}
	return conn, chans, reqs, nil
}

// checkHostKey is the HostKeyCallback. It also runs on every re-key, when
// the host must present the key it presented first.
func (a *hopAttempt) checkHostKey(_ string, _ net.Addr, key ssh.PublicKey) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.hostKey != nil {
		if sameKey(key, a.hostKey) {
			return nil
		}
		return &hostKeyError{offered: key, msg: changedKeyMessage(a.hostKey, key)}
	}
	hk := a.target.HostKey
	switch {
	case hk.Pinned != nil && sameKey(key, hk.Pinned):
	case hk.Pinned != nil:
		return &hostKeyError{offered: key, msg: changedKeyMessage(hk.Pinned, key)}
	case hk.Policy == testum.HostKeyAutoAdd:
		a.first = true
	default:
		return &hostKeyError{offered: key, msg: fmt.Sprintf(
			"unknown host: its key %s (%s) is not pinned and the strict host key policy is in force",
			Fingerprint(key), key.Type())}
	}
	a.hostKey = key
	return nil
}

func changedKeyMessage(pinned, offered ssh.PublicKey) string {
	return fmt.Sprintf("host key changed: pinned %s, offered %s", Fingerprint(pinned), Fingerprint(offered))
}

// observeAuth is the AuthCallback: it only records what the host allows and
// what failed, for the error message, and lets the library pick the method.
func (a *hopAttempt) observeAuth(c *ssh.ClientAuthContext) (ssh.AuthMethod, error) {
	a.mu.Lock()
	a.allowed, a.tried = c.AllowedMethods, c.TriedMethods
	a.mu.Unlock()
	return nil, nil
}

// noteRefused remembers a keyboard-interactive prompt that was not
// answered, for the error message.
func (a *hopAttempt) noteRefused(prompt string) {
	a.mu.Lock()
	a.refused = prompt
	a.mu.Unlock()
}

func authMethods(t *Target, refused func(prompt string)) ([]ssh.AuthMethod, error) {
	var methods []ssh.AuthMethod
	signer := t.Signer
	if signer == nil && len(t.PrivateKey) > 0 {
		s, err := ParsePrivateKey(t.PrivateKey, t.Passphrase)
		if err != nil {
			return nil, plain(err, "cannot use the private key: %v", err)
		}
		signer = s
	}
	if signer != nil {
		methods = append(methods, ssh.PublicKeys(signer))
	}
	if t.Password != "" {
		methods = append(methods,
			ssh.Password(t.Password),
			ssh.KeyboardInteractive(answerPasswordPrompts(t.Password, refused)))
	}
	return methods, nil
}

// maxPromptRounds bounds a keyboard-interactive exchange that keeps asking.
const maxPromptRounds = 4

// answerPasswordPrompts answers keyboard-interactive prompts that ask for
// the login password (PAM's "Password: ", "user@host's password: ") with
// the password, and visible prompts with "". Any other hidden prompt (a
// one-time code, a new password) fails the method: the password is never
// typed into a question that did not ask for it. refused, if set, is told
// the prompt.
func answerPasswordPrompts(password string, refused func(prompt string)) ssh.KeyboardInteractiveChallenge {
	rounds := 0
	return func(_, _ string, questions []string, echos []bool) ([]string, error) {
		answers := make([]string, len(questions))
		if len(questions) == 0 {
			return answers, nil // an informational round
		}
		rounds++
		if rounds > maxPromptRounds {
			return nil, errors.New("the host keeps asking keyboard-interactive questions")
		}
		for i, q := range questions {
			hidden := i >= len(echos) || !echos[i]
			switch {
			case !hidden:
			case isPasswordPrompt(q):
				answers[i] = password
			default:
				if refused != nil {
					refused(q)
				}
				return nil, fmt.Errorf("keyboard-interactive prompt %q is not a password prompt; testum answers only password prompts", strings.TrimSpace(q))
			}
		}
		return answers, nil
	}
}

// passwordWord matches the word "password" in the languages PAM most often
// speaks; notPassword matches prompts that mention a password but do not ask
// for the current one (a change of password, a one-time password).
var (
	passwordWord = regexp.MustCompile(`(?i)password|passwort|mot de passe|contraseña|senha|пароль`)
	notPassword  = regexp.MustCompile(`(?i)\bnew\b|retype|re-enter|repeat|again|confirm|one[- ]time|\botp\b|neues|nouveau|новый|повтор`)
)

// isPasswordPrompt reports whether a hidden prompt asks for the password.
func isPasswordPrompt(q string) bool {
	return passwordWord.MatchString(q) && !notPassword.MatchString(q)
}

// connectError classifies a failure to open the TCP connection (or the
// channel through the previous jump host).
func (a *hopAttempt) connectError(ctx, hctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var denied *deniedError
	if errors.As(err, &denied) {
		return &DialError{Failure: Unreachable, Err: plain(err, "not dialed: %s", denied)}
	}
	if hctx.Err() != nil || isTimeout(err) {
		if a.via != nil {
			return &DialError{Failure: Unreachable, Err: plain(err,
				"%s could not connect to it within %v", a.viaName, a.timeout)}
		}
		return &DialError{Failure: Unreachable, Err: plain(err, "no TCP connection within %v", a.timeout)}
	}
	if a.via != nil {
		var oc *ssh.OpenChannelError
		if errors.As(err, &oc) {
			msg := oc.Message
			if msg == "" {
				msg = oc.Reason.String()
			}
			if oc.Reason == ssh.Prohibited {
				return &DialError{Failure: Unreachable, Err: plain(err,
					"%s refuses to forward connections (%s)", a.viaName, msg)}
			}
			return &DialError{Failure: Unreachable, Err: plain(err,
				"%s could not connect to it: %s", a.viaName, strings.ToLower(msg))}
		}
		return &DialError{Failure: Unreachable, Err: plain(err,
			"connection to %s failed: %s", a.viaName, describeNetError(err))}
	}
	// A reset, unlike a refusal, means the host accepted the connection and
	// dropped it at once, before connect even returned.
	return &DialError{Failure: Unreachable, Err: plain(err, "%s", describeNetError(err)),
		connected: errors.Is(err, syscall.ECONNRESET)}
}

// handshakeError classifies a failure of the SSH handshake: by what was
// rejected, or, for timeouts and dropped connections, by how far it got.
func (a *hopAttempt) handshakeError(ctx, hctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var hke *hostKeyError
	if errors.As(err, &hke) {
		return &DialError{Failure: HostKeyRejected, Offered: hke.offered, Err: plain(err, "%s", hke.msg)}
	}
	var ane *ssh.AlgorithmNegotiationError
	if errors.As(err, &ane) {
		if pinned := a.target.HostKey.Pinned; ane.What == "host key" && pinned != nil {
			// The host no longer has a key of the pinned type: as much a
			// changed key as a different key of that type.
			return &DialError{Failure: HostKeyRejected, Err: plain(err,
				"host key changed: pinned %s (%s), the host offers no %s key (it offers %s)",
				Fingerprint(pinned), pinned.Type(), pinned.Type(), strings.Join(ane.RequestedAlgorithms, ", "))}
		}
		return &DialError{Failure: Unreachable, Err: plain(err,
			"the host and testum share no %s algorithm (the host offers %s)",
			ane.What, strings.Join(ane.RequestedAlgorithms, ", "))}
	}

	a.mu.Lock()
	authBegan := a.hostKey != nil
	allowed, tried, refused := a.allowed, a.tried, a.refused
	a.mu.Unlock()
	spoke := a.conn.spoke.Load()

	if hctx.Err() != nil || isTimeout(err) {
		switch {
		case !spoke:
			return &DialError{Failure: Unreachable, Err: plain(err, "no SSH banner within %v", a.timeout)}
		case !authBegan:
			return &DialError{Failure: Unreachable, Err: plain(err, "SSH key exchange did not finish within %v", a.timeout)}
		default:
			return &DialError{Failure: Unreachable, Err: plain(err, "authentication did not finish within %v", a.timeout)}
		}
	}
	if !authBegan {
		if !spoke {
			return &DialError{Failure: Unreachable, Err: plain(err,
				"the host closed the connection before sending an SSH banner (%s)", describeNetError(err))}
		}
		return &DialError{Failure: Unreachable, Err: plain(err, "SSH handshake failed: %s", describeNetError(err))}
	}

	// Authentication began: the host answered and was verified.
	tried = slices.DeleteFunc(slices.Clone(tried), func(m string) bool { return m == "none" })
	tried = slices.Compact(tried)
	reason, disconnected := disconnectReason(err)
	if refused != "" && !disconnected {
		return &DialError{Failure: AuthFailed, Err: plain(err,
			"authentication failed (tried: %s); keyboard-interactive asked %q, which is not a password prompt (testum answers only password prompts)",
			strings.Join(tried, ", "), strings.TrimSpace(refused))}
	}
	switch {
	case disconnected && len(tried) > 0:
		return &DialError{Failure: AuthFailed, Err: plain(err,
			"authentication failed (tried: %s); the host said: %s", strings.Join(tried, ", "), reason)}
	case disconnected:
		return &DialError{Failure: AuthFailed, Err: plain(err, "the host ended authentication: %s", reason)}
	case len(tried) > 0:
		return &DialError{Failure: AuthFailed, Err: plain(err, "authentication failed (tried: %s)", strings.Join(tried, ", "))}
	case strings.Contains(err.Error(), "unable to authenticate"):
		allowed = slices.DeleteFunc(slices.Clone(allowed), func(m string) bool { return m == "none" })
		return &DialError{Failure: AuthFailed, Err: plain(err,
			"authentication failed: the host accepts %s and no credential for it was given", orNothing(allowed))}
	}
	return &DialError{Failure: Unreachable, Err: plain(err,
		"connection lost during authentication: %s", describeNetError(err))}
}

func orNothing(methods []string) string {
	if len(methods) == 0 {
		return "no method"
	}
	return strings.Join(methods, ", ")
}

// disconnectReason extracts the host's words from an SSH disconnect message
// ("ssh: disconnect, reason 2: Too many authentication failures"); the
// library does not export its type.
func disconnectReason(err error) (string, bool) {
	const marker = "ssh: disconnect, reason "
	s := err.Error()
	i := strings.Index(s, marker)
	if i < 0 {
		return "", false
	}
	s = s[i+len(marker):]
	if j := strings.Index(s, ": "); j >= 0 {
		s = s[j+2:]
	}
	return s, true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// describeNetError says what went wrong on the network in plain words.
func describeNetError(err error) string {
	var dns *net.DNSError
	switch {
	case errors.As(err, &dns) && dns.IsNotFound:
		return fmt.Sprintf("unknown host name %q", dns.Name)
	case errors.As(err, &dns):
		return fmt.Sprintf("cannot resolve %q: %s", dns.Name, dns.Err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "no route to host"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network is unreachable"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by the host"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the host"
	case errors.Is(err, net.ErrClosed):
		return "connection closed"
	case isTimeout(err):
		return "timed out"
	}
	return strings.TrimPrefix(err.Error(), "ssh: ")
}

// watchedConn notes whether the host sent anything, to tell "never spoke
// SSH" from "stalled later" when the handshake times out.
type watchedConn struct {
	net.Conn
	spoke atomic.Bool
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.spoke.Load() {
		c.spoke.Store(true)
	}
	return n, err
}
