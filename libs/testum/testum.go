// Package testum holds the domain types every service shares: run and host
// states, and the typed errors that the API maps to HTTP statuses. It uses
// the standard library only.
package testum

import (
	"errors"
	"fmt"
)

// RunState is where a run is in its life: queued → running → one final state.
type RunState string

// The run states.
const (
	RunQueued    RunState = "queued"
	RunRunning   RunState = "running"
	RunSucceeded RunState = "succeeded"
	RunFailed    RunState = "failed"
	RunCanceled  RunState = "canceled"
	RunAborted   RunState = "aborted" // the failure threshold was crossed
)

// Final reports whether no further transition can happen.
func (s RunState) Final() bool {
	switch s {
	case RunSucceeded, RunFailed, RunCanceled, RunAborted:
		return true
	}
	return false
}

// Valid reports whether s is one of the run states.
func (s RunState) Valid() bool {
	switch s {
	case RunQueued, RunRunning, RunSucceeded, RunFailed, RunCanceled, RunAborted:
		return true
	}
	return false
}

// HostState is where one host of a run is.
type HostState string

// The host states.
const (
	HostQueued          HostState = "queued"
	HostConnecting      HostState = "connecting"
	HostRunning         HostState = "running"
	HostOK              HostState = "ok"
	HostFailed          HostState = "failed" // the command exited non-zero or died of a signal
	HostTimeout         HostState = "timeout"
	HostUnreachable     HostState = "unreachable"
	HostAuthFailed      HostState = "auth_failed"
	HostHostKeyRejected HostState = "hostkey_rejected"
	HostCanceled        HostState = "canceled"
	HostLost            HostState = "lost" // its executor died; the command may or may not have finished
	HostSkipped         HostState = "skipped"
)

// HostStates lists every host state in life order, for counts and filters.
var HostStates = []HostState{
	HostQueued, HostConnecting, HostRunning, HostOK, HostFailed, HostTimeout,
	HostUnreachable, HostAuthFailed, HostHostKeyRejected, HostCanceled, HostLost, HostSkipped,
}

// Final reports whether the host is done.
func (s HostState) Final() bool {
	switch s {
	case HostQueued, HostConnecting, HostRunning:
		return false
	}
	return s.Valid()
}

// Failure reports whether a final state counts against a failure threshold.
func (s HostState) Failure() bool {
	switch s {
	case HostFailed, HostTimeout, HostUnreachable, HostAuthFailed, HostHostKeyRejected, HostLost:
		return true
	}
	return false
}

// Valid reports whether s is one of the host states.
func (s HostState) Valid() bool {
	for _, v := range HostStates {
		if v == s {
			return true
		}
	}
	return false
}

// PlatformState is the outcome of the last contact with a platform: one of
// these, or the HostState of a failed contact (unreachable, auth_failed,
// hostkey_rejected).
type PlatformState string

// The platform states testum sets itself.
const (
	PlatformUnknown   PlatformState = "unknown" // never contacted, or changed since
	PlatformReachable PlatformState = "reachable"
)

// HostKeyPolicy says what to do with a host key seen for the first time.
type HostKeyPolicy string

// The host key policies.
const (
	HostKeyAutoAdd HostKeyPolicy = "auto_add" // trust on first use and pin it
	HostKeyStrict  HostKeyPolicy = "strict"   // only keys already pinned
)

// Valid reports whether p is a known policy.
func (p HostKeyPolicy) Valid() bool { return p == HostKeyAutoAdd || p == HostKeyStrict }

// AuthMethod is how testum logs in to a platform.
type AuthMethod string

// The ways to log in.
const (
	AuthPassword   AuthMethod = "password"
	AuthPrivateKey AuthMethod = "private_key"
)

// Code classifies an error for the API: each code maps to one HTTP status.
type Code string

// The error codes, each with its HTTP status.
const (
	CodeInvalid      Code = "invalid"      // 400 / 422: the request is wrong
	CodeUnauthorized Code = "unauthorized" // 401: no valid session
	CodeForbidden    Code = "forbidden"    // 403: the role may not
	CodeNotFound     Code = "not_found"    // 404
	CodeConflict     Code = "conflict"     // 409: state does not allow it
	CodeTooMany      Code = "too_many"     // 429
	CodeUnavailable  Code = "unavailable"  // 503: a dependency is down
	CodeInternal     Code = "internal"     // 500
)

// Error is an error a user may see: its message is safe to show and never
// holds a secret. Err, if set, is the cause, kept for logs.
type Error struct {
	Code    Code
	Reason  string // a finer machine-readable code than Code (e.g. hosts_too_complex); the API sends it as "code"
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds a user-facing error of the given code.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid is shorthand for a CodeInvalid error.
func Invalid(format string, args ...any) *Error { return Errorf(CodeInvalid, format, args...) }

// NotFound is shorthand for a CodeNotFound error.
func NotFound(format string, args ...any) *Error { return Errorf(CodeNotFound, format, args...) }

// Conflict is shorthand for a CodeConflict error.
func Conflict(format string, args ...any) *Error { return Errorf(CodeConflict, format, args...) }

// CodeOf returns the code of the first *Error in err's chain, or CodeInternal.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}
