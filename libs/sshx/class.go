package sshx

import (
	"context"
	"errors"
	"io"
	"syscall"
)

// FailureClass says, coarsely, why a dial failed: few enough values to
// count failures by, unlike Failure, which says what the host's state
// becomes.
type FailureClass string

// The classes of dial failures.
const (
	ClassRefused FailureClass = "refused"  // the host (or a jump host's forward) refused the TCP connection
	ClassTimeout FailureClass = "timeout"  // a phase did not finish within ConnectTimeout
	ClassAuth    FailureClass = "auth"     // authentication failed (or no credential could be used)
	ClassHostKey FailureClass = "host_key" // the host key was rejected
	ClassReset   FailureClass = "reset"    // the host reset or closed the connection during the handshake
	ClassOther   FailureClass = "other"
)

// FailureClasses lists every FailureClass.
var FailureClasses = []FailureClass{ClassRefused, ClassTimeout, ClassAuth, ClassHostKey, ClassReset, ClassOther}

// ClassOf classifies a dial error. An error that is no *DialError (ctx
// ended, a bad target) is ClassOther.
func ClassOf(err error) FailureClass {
	var de *DialError
	if !errors.As(err, &de) {
		return ClassOther
	}
	switch de.Failure {
	case AuthFailed:
		return ClassAuth
	case HostKeyRejected:
		return ClassHostKey
	}
	switch {
	case de.timedOut || isTimeout(de.Err) || errors.Is(de.Err, context.DeadlineExceeded):
		return ClassTimeout
	case errors.Is(de.Err, syscall.ECONNREFUSED):
		return ClassRefused
	case errors.Is(de.Err, syscall.ECONNRESET), errors.Is(de.Err, syscall.EPIPE),
		errors.Is(de.Err, io.EOF), errors.Is(de.Err, io.ErrUnexpectedEOF):
		return ClassReset
	}
	return ClassOther
}

// noteTimeout marks a hop's failure as a timeout when the hop's own
// deadline passed: the handshake then fails on the connection closed under
// it, an error that alone does not say why.
func noteTimeout(ctx, hctx context.Context, err error) error {
	var de *DialError
	if errors.As(err, &de) && ctx.Err() == nil && errors.Is(hctx.Err(), context.DeadlineExceeded) {
		de.timedOut = true
	}
	return err
}

// noteConnected marks a failure as one of the SSH handshake, after the TCP
// connection was open.
func noteConnected(err error) error {
	var de *DialError
	if errors.As(err, &de) {
		de.connected = true
	}
	return err
}

// PreAuth reports whether a dial failed because the host reset or closed
// the connection after accepting it and before authentication completed:
// the way an sshd sheds handshakes it has no room for (OpenSSH's
// MaxStartups). Nothing ran on the host, so dialing again is safe. A
// rejected credential or host key is not such a failure.
func PreAuth(err error) bool {
	var de *DialError
	return errors.As(err, &de) && de.connected && de.Failure == Unreachable && ClassOf(err) == ClassReset
}

// Overloaded reports whether a dial failure looks like the host, or the
// path to it, shedding load: a PreAuth failure, or a handshake that
// stalled past the connect timeout after the TCP connection was open. A
// host that refuses or never answers TCP is not overloaded, only absent.
func Overloaded(err error) bool {
	var de *DialError
	if !errors.As(err, &de) || !de.connected || de.Failure != Unreachable {
		return false
	}
	c := ClassOf(err)
	return c == ClassReset || c == ClassTimeout
}
