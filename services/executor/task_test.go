package executor

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/testum"
)

func TestCommandOutcome(t *testing.T) {
	lost := fmt.Errorf("command: %w: the connection was closed by the host or the network", sshx.ErrConnectionLost)
	for _, c := range []struct {
		name   string
		res    sshx.Result
		err    error
		state  testum.HostState
		reason string // in the host's error
	}{
		{"exit 0", sshx.Result{}, nil, testum.HostOK, ""},
		{"exit 3", sshx.Result{ExitCode: 3}, nil, testum.HostFailed, ""},
		{"signal", sshx.Result{ExitCode: -1, Signal: "KILL"}, nil, testum.HostFailed, "killed by signal KILL"},
		{"connection lost after start", sshx.Result{ExitCode: -1}, lost, testum.HostLost, "after the command started"},
		{"keepalives unanswered after start", sshx.Result{ExitCode: -1},
			fmt.Errorf("command: %w: no keepalive reply for 45s", sshx.ErrConnectionLost), testum.HostLost, "no keepalive reply"},
		{"connection lost before start", sshx.Result{ExitCode: -1},
			fmt.Errorf("open a session: %w: %w", sshx.ErrNotStarted, sshx.ErrConnectionLost), testum.HostUnreachable, "before the command started"},
		{"refused, not started", sshx.Result{ExitCode: -1},
			fmt.Errorf("open a session: %w", sshx.ErrNotStarted), testum.HostFailed, "did not start"},
		{"other error", sshx.Result{ExitCode: -1}, errors.New("write stdout: disk full"), testum.HostFailed, "disk full"},
	} {
		t.Run(c.name, func(t *testing.T) {
			oc := commandOutcome(c.res, c.err)
			if oc.state != c.state || !strings.Contains(oc.err, c.reason) {
				t.Errorf("commandOutcome(%+v, %v) = %s %q, want %s with %q", c.res, c.err, oc.state, oc.err, c.state, c.reason)
			}
		})
	}
}
