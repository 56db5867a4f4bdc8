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
