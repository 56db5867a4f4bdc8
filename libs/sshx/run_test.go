package sshx_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/testenv"
)

func TestRunResults(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	c := dial(t, passwordTarget(s, 1), testConfig)

	tests := []struct {
		name       string
		cmd        string
		wantOut    string
		wantErrOut string
		want       sshx.Result
	}{
		{"success", "echo hello", "hello\n", "", sshx.Result{ExitCode: 0}},
		{"exit code", "exit 3", "", "", sshx.Result{ExitCode: 3}},
		{"stdout and stderr apart", "echo out; echo err >&2; exit 1", "out\n", "err\n", sshx.Result{ExitCode: 1}},
		{"killed by TERM", "kill -TERM $$", "", "", sshx.Result{ExitCode: -1, Signal: "TERM"}},
		{"killed by KILL", "kill -KILL $$", "", "", sshx.Result{ExitCode: -1, Signal: "KILL"}},
		{"empty stdin", "cat; echo done", "done\n", "", sshx.Result{ExitCode: 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, res := run(t, c, tc.cmd)
			if out != tc.wantOut || errOut != tc.wantErrOut || res != tc.want {
				t.Fatalf("Run %q = stdout %q stderr %q %+v, want %q %q %+v", tc.cmd, out, errOut, res, tc.wantOut, tc.wantErrOut, tc.want)
			}
		})
	}
}

func TestRunStreamsOutput(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	c := dial(t, passwordTarget(s, 1), testConfig)

	w := newLineWriter("a\n")
	done := make(chan struct{})
	var (
		res sshx.Result
		err error
	)
	go func() {
		defer close(done)
		res, err = c.Run(context.Background(), sshx.Command{Cmd: "echo a; sleep 2; echo b", Stdout: w})
	}()
	select {
	case <-w.seen:
	case <-done:
		t.Fatalf("Run returned (%v) before the first line reached the writer", err)
	case <-time.After(waitFor):
		t.Fatal("the first line never arrived")
	}
	select {
	case <-done:
		t.Fatal("the command had already ended when its first line arrived: output was buffered")
	default:
	}
	<-done
	if err != nil || res.ExitCode != 0 || w.String() != "a\nb\n" {
		t.Fatalf("Run = %+v, %v, stdout %q", res, err, w.String())
	}
}

func TestRunStdin(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	c := dial(t, passwordTarget(s, 1), testConfig)

	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: more than the channel window
	var out bytes.Buffer
	res, err := c.Run(context.Background(), sshx.Command{Cmd: "wc -c", Stdin: bytes.NewReader(big), Stdout: &out})
	if err != nil || res.ExitCode != 0 || strings.TrimSpace(out.String()) != fmt.Sprint(len(big)) {
		t.Fatalf("wc -c of %d bytes = %q, %+v, %v", len(big), out.String(), res, err)
	}

	// A command that never reads its input must not hang the copy.
	res, err = c.Run(context.Background(), sshx.Command{Cmd: "true", Stdin: bytes.NewReader(big)})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("true with unread stdin = %+v, %v", res, err)
	}

	// A failing reader is reported after the command ends.
	broken := io.MultiReader(strings.NewReader("partial\n"), errReader{errors.New("disk on fire")})
	out.Reset()
	res, err = c.Run(context.Background(), sshx.Command{Cmd: "cat", Stdin: broken, Stdout: &out})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") || res.ExitCode != 0 || out.String() != "partial\n" {
		t.Fatalf("cat of a failing reader = %q, %+v, %v", out.String(), res, err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestRunSameWriterAndConcurrentSessions(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	c := dial(t, passwordTarget(s, 1), testConfig)

	const sessions = 5 // under sshd's default MaxSessions of 10
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var both bytes.Buffer // one unsynchronized writer for both streams
			cmd := fmt.Sprintf("for n in 1 2 3 4 5 6 7 8 9 10; do echo out%d; echo err%d >&2; done; exit %d", i, i, i)
			res, err := c.Run(context.Background(), sshx.Command{Cmd: cmd, Stdout: &both, Stderr: &both})
			switch {
			case err != nil:
				errs <- err
			case res.ExitCode != i:
				errs <- fmt.Errorf("session %d exit %d", i, res.ExitCode)
			case strings.Count(both.String(), fmt.Sprintf("out%d\n", i)) != 10 || strings.Count(both.String(), fmt.Sprintf("err%d\n", i)) != 10:
				errs <- fmt.Errorf("session %d output %q", i, both.String())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRunWriterErrorDoesNotStallCommand(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	c := dial(t, passwordTarget(s, 1), testConfig)

	// 4 MiB of output into a writer that fails at once: the rest must be
	// drained, or the command would block on a full channel window.
	res, err := c.Run(context.Background(), sshx.Command{Cmd: "head -c 4194304 /dev/zero; exit 5", Stdout: failingWriter{}})
	if err == nil || !strings.Contains(err.Error(), "write stdout") || res.ExitCode != 5 {
		t.Fatalf("Run = %+v, %v; want exit 5 and a write error", res, err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("sink closed") }

// startAndWaitForProcess starts cmd in the background and returns once a
// process whose command line contains marker runs on the host.
func startAndWaitForProcess(t *testing.T, s *testenv.SSHD, host int, c *sshx.Client, ctx context.Context, cmd, marker string) (wait func() (sshx.Result, string, error)) {
	t.Helper()
	out := newLineWriter("\x00never")
	type ran struct {
		res sshx.Result
		err error
	}
	done := make(chan ran, 1)
	go func() {
		res, err := c.Run(ctx, sshx.Command{Cmd: cmd, Stdout: out, Stderr: out})
		done <- ran{res, err}
	}()
	// The process must be the marker itself (the exec'd command), not a
	// shell whose command line merely contains it: a shell that has just
	// started has not run its traps yet.
	eventually(t, "the command runs on the host", func() bool {
		for _, p := range processes(t, s, hostIP(s, host), marker) {
			if p.Cmdline == marker {
				return true
			}
		}
		return false
	})
	return func() (sshx.Result, string, error) {
		select {
		case r := <-done:
			return r.res, out.String(), r.err
		case <-time.After(waitFor):
			t.Fatalf("Run of %q did not return", cmd)
			return sshx.Result{}, "", nil
		}
	}
}

func TestRunCancelKillsRemoteProcess(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	c := dial(t, passwordTarget(s, 1), testConfig)

	const marker = "sleep 300"
	// A shell with a child: the whole process group must die, not just the shell.
	cmd := marker + "; echo unreachable"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := startAndWaitForProcess(t, s, 1, c, ctx, cmd, marker)
	cancel()
	res, _, err := wait()
	if !errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run after cancel: %v, want context.Canceled", err)
	}
	if res.Signal != "KILL" || res.ExitCode != -1 {
		t.Fatalf("Result = %+v, want death by KILL", res)
	}
	if !strings.Contains(err.Error(), "sent KILL") {
		t.Fatalf("message %q does not say KILL was sent", err)
	}
	eventually(t, "no "+marker+" is left on the host", func() bool {
		return len(processes(t, s, hostIP(s, 1), marker)) == 0
	})
	// The connection is still usable after a kill.
	if out, _, _ := run(t, c, "echo still here"); out != "still here\n" {
		t.Fatalf("after a kill: %q", out)
	}
}

func TestRunTimeoutKillsRemoteProcess(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	c := dial(t, passwordTarget(s, 1), testConfig)

	const marker = "sleep 301"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var out bytes.Buffer
	res, err := c.Run(ctx, sshx.Command{Cmd: marker, Stdout: &out})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run: %v, want context.DeadlineExceeded", err)
	}
	if res.Signal != "KILL" || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("Result %+v, error %q", res, err)
	}
	eventually(t, "no "+marker+" is left on the host", func() bool {
		return len(processes(t, s, hostIP(s, 1), marker)) == 0
	})
}

func TestRunKillGrace(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)

	t.Run("TERM is enough", func(t *testing.T) {
		cfg := testConfig
		cfg.KillGrace = waitFor // never reached: the command obeys TERM
		c := dial(t, passwordTarget(s, 1), cfg)
		const marker = "sleep 302"
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// The trap proves the signal was delivered, not a hang-up on close.
		wait := startAndWaitForProcess(t, s, 1, c, ctx, "trap 'echo got TERM; exit 7' TERM; "+marker+" & wait", marker)
		cancel()
		res, out, err := wait()
		if !errors.Is(err, context.Canceled) || res.ExitCode != 7 || !strings.Contains(out, "got TERM") {
			t.Fatalf("Run = %+v, %q, %v; want exit 7 after TERM", res, out, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "sent TERM") || strings.Contains(msg, "KILL") {
			t.Fatalf("message %q, want TERM only", msg)
		}
		eventually(t, "no "+marker+" is left on the host", func() bool {
			return len(processes(t, s, hostIP(s, 1), marker)) == 0
		})
	})
	t.Run("KILL after the grace", func(t *testing.T) {
		cfg := testConfig
		cfg.KillGrace = 500 * time.Millisecond
		c := dial(t, passwordTarget(s, 1), cfg)
		const marker = "sleep 303"
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// An ignored signal stays ignored across exec: both ignore TERM.
		wait := startAndWaitForProcess(t, s, 1, c, ctx, "trap '' TERM; "+marker, marker)
		cancel()
		res, _, err := wait()
		if !errors.Is(err, context.Canceled) || res.Signal != "KILL" {
			t.Fatalf("Run = %+v, %v; want death by KILL", res, err)
		}
		if !strings.Contains(err.Error(), "sent TERM, then KILL after 500ms") {
			t.Fatalf("message %q", err)
		}
		eventually(t, "no "+marker+" is left on the host", func() bool {
			return len(processes(t, s, hostIP(s, 1), marker)) == 0
		})
	})
}

func TestRunCanceledBeforeStart(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	c := dial(t, passwordTarget(s, 1), testConfig)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	path := fmt.Sprintf("/tmp/sshx-must-not-exist-%d", time.Now().UnixNano())
	if _, err := c.Run(ctx, sshx.Command{Cmd: "touch " + path}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	if out, _, _ := run(t, c, "test -e "+path+" && echo exists || echo absent"); out != "absent\n" {
		t.Fatalf("a command ran for a canceled context: %q", out)
	}
}

// killLeftovers ends processes a test left behind on purpose (a lost
// connection leaves its command running: that is the point).
func killLeftovers(t *testing.T, s *testenv.SSHD, host int, marker string) {
	t.Helper()
	procs := processes(t, s, hostIP(s, host), marker)
	if len(procs) == 0 {
		return
	}
	c := dial(t, passwordTarget(s, host), testConfig)
	var pids []string
	for _, p := range procs {
		pids = append(pids, fmt.Sprint(p.PID))
	}
	run(t, c, "kill -KILL "+strings.Join(pids, " ")+" 2>/dev/null; true")
}

func TestRunDetectsDeadPeer(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	proxy := startFreezingProxy(t, hostAddr(s, 1))
	target := passwordTarget(s, 1)
	target.Addr = proxy.Addr()
	c := dial(t, target, testConfig)

	const marker = "sleep 304"
	defer killLeftovers(t, s, 1, marker)
	wait := startAndWaitForProcess(t, s, 1, c, context.Background(), marker, marker)
	proxy.freeze()
	res, _, err := wait()
	if !errors.Is(err, sshx.ErrConnectionLost) || res.ExitCode != -1 {
		t.Fatalf("Run on a dead peer = %+v, %v; want ErrConnectionLost", res, err)
	}
	if !strings.Contains(err.Error(), "keepalive") {
		t.Fatalf("message %q does not say keepalives went unanswered", err)
	}
	if _, err := c.Run(context.Background(), sshx.Command{Cmd: "true"}); !errors.Is(err, sshx.ErrConnectionLost) {
		t.Fatalf("Run after the loss: %v, want ErrConnectionLost", err)
	}
}

func TestRunDetectsDroppedConnection(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	proxy := startFreezingProxy(t, hostAddr(s, 1))
	target := passwordTarget(s, 1)
	target.Addr = proxy.Addr()
	cfg := testConfig
	cfg.KeepAlive = time.Hour // the drop, not a keepalive, must be noticed
	c := dial(t, target, cfg)

	const marker = "sleep 305"
	defer killLeftovers(t, s, 1, marker)
	wait := startAndWaitForProcess(t, s, 1, c, context.Background(), marker, marker)
	proxy.dropAll()
	_, _, err := wait()
	if !errors.Is(err, sshx.ErrConnectionLost) {
		t.Fatalf("Run on a dropped connection: %v, want ErrConnectionLost", err)
	}
}

func TestRunAfterClose(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	c := dial(t, passwordTarget(s, 1), testConfig)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Run(context.Background(), sshx.Command{Cmd: "true"}); err == nil || errors.Is(err, sshx.ErrConnectionLost) {
		t.Fatalf("Run after Close: %v, want a closed-client error", err)
	}
}

// OpenSSH refuses the signal request for root logins; the kill then runs
// from a second session of the same connection.
func TestRunKillFallbackWhenSignalRefused(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	c := dial(t, passwordTarget(s, 1), testConfig)
	sshx.RefuseSignals(c)

	const marker = "sleep 306"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := startAndWaitForProcess(t, s, 1, c, ctx, marker+"; echo unreachable", marker)
	cancel()
	res, _, err := wait()
	if !errors.Is(err, context.Canceled) || res.Signal != "KILL" {
		t.Fatalf("Run = %+v, %v; want death by KILL", res, err)
	}
	if !strings.Contains(err.Error(), "from a second session") {
		t.Fatalf("message %q does not mention the fallback", err)
	}
	eventually(t, "no "+marker+" is left on the host", func() bool {
		return len(processes(t, s, hostIP(s, 1), marker)) == 0
	})
}

// With the signal refused and another command on the connection, the
// fallback cannot tell the sessions apart: Run must not kill the wrong one,
// and must still return rather than wait for a process that lives on.
func TestRunKillRefusedWithConcurrentCommandsDoesNotHang(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	c := dial(t, passwordTarget(s, 1), testConfig)
	sshx.RefuseSignals(c)

	const other, marker = "sleep 307", "sleep 308"
	defer killLeftovers(t, s, 1, "sleep 30")
	otherCtx, cancelOther := context.WithCancel(context.Background())
	defer cancelOther()
	waitOther := startAndWaitForProcess(t, s, 1, c, otherCtx, other, other)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := startAndWaitForProcess(t, s, 1, c, ctx, marker, marker)
	cancel()
	res, _, err := wait()
	if !errors.Is(err, context.Canceled) || res.ExitCode != -1 {
		t.Fatalf("Run = %+v, %v; want an unconfirmed kill", res, err)
	}
	if !strings.Contains(err.Error(), "may still be running") {
		t.Fatalf("message %q does not warn that the process may still run", err)
	}
	if len(processes(t, s, hostIP(s, 1), other)) == 0 {
		t.Fatal("the other command was killed")
	}
	killLeftovers(t, s, 1, "sleep 30")
	if _, _, err := waitOther(); err == nil {
		t.Log("the other command ended normally") // killed from outside: exit status varies
	}
}

// waitingStdin has nothing to give until the command ends (as a sudo
// answer that waits for a prompt which never comes).
type waitingStdin struct{ ended chan struct{} }

func (w waitingStdin) Read([]byte) (int, error) {
	<-w.ended
	return 0, io.EOF
}

func (w waitingStdin) CommandEnded() { close(w.ended) }

// TestRunEndsAWaitingStdin: Run returns once the command ended, although
// its Stdin never gave anything, and the Client closes without hanging.
func TestRunEndsAWaitingStdin(t *testing.T) {
	t.Parallel()
	s := testenv.StartSSHD(t)
	c := dial(t, passwordTarget(s, 1), testConfig)
	done := make(chan struct{})
	var (
		res sshx.Result
		err error
	)
	go func() {
		defer close(done)
		res, err = c.Run(context.Background(), sshx.Command{Cmd: "exit 4", Stdin: waitingStdin{make(chan struct{})}})
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run waits for a stdin that has nothing to give after the command ended")
	}
	if err != nil || res.ExitCode != 4 {
		t.Fatalf("Run = %+v, %v", res, err)
	}
}
