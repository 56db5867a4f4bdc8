package sshx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// connEndWait bounds how long Run waits, after a session broke without an
// exit status, to learn whether the whole connection went down with it
// (the session's channels are dropped a moment before the connection's
// end is visible).
const connEndWait = time.Second

// Command is one command line to run through the host's shell.
type Command struct {
	Cmd string
	// Stdin, if set, is copied to the command, then closed (EOF). Run waits
	// for the copy, so a reader must end: a bytes or strings reader, a file,
	// a pipe that gets closed. nil gives the command an empty stdin.
	Stdin io.Reader
	// Stdout and Stderr receive the output as it arrives. They are written
	// from two goroutines; if they are the same writer (==), Run serializes
	// the writes. A write error stops delivery to that writer (the rest is
	// discarded so the command does not stall) and is returned at the end.
	Stdout io.Writer
	Stderr io.Writer
}

// Result is how a command ended. ExitCode is -1 when it died of a signal
// (Signal is then "KILL", "TERM"…, as the host names it without "SIG") or
// when the end is unknown.
type Result struct {
	ExitCode int
	Signal   string
}

// Run runs cmd in a new session and returns when the command has ended and
// all its output has been delivered.
//
// A non-zero exit or a death by signal is a Result, not an error. When ctx
// ends first, the command's process group is signalled (KILL, or TERM and
// then KILL after Config.KillGrace) before the session is closed, and the
// error wraps ctx.Err(): context.DeadlineExceeded for a timeout,
// context.Canceled for a cancel. Run returns at most about KillGrace + 5s
// after ctx ends, even when the host does not confirm the kill (the error
// then says the process may still be running). When the connection drops
// or stops answering keepalives the error wraps ErrConnectionLost, and the
// command may or may not have finished on the host.
func (c *Client) Run(ctx context.Context, cmd Command) (Result, error) {
	unknown := Result{ExitCode: -1}
	if err := ctx.Err(); err != nil {
		return unknown, fmt.Errorf("command not started: %w", err)
	}
	sess, err := c.openSession(ctx)
	if err != nil {
		return unknown, err
	}
	var out outputs
	out.attach(sess, cmd.Stdout, cmd.Stderr)
	var stdin io.WriteCloser
	if cmd.Stdin != nil {
		if stdin, err = sess.StdinPipe(); err != nil {
			_ = sess.Close()
			return unknown, fmt.Errorf("stdin: %w", err)
		}
	}
	// Opening the session took a round trip: do not start a command for a
	// context that has ended meanwhile.
	if err := ctx.Err(); err != nil {
		_ = sess.Close()
		return unknown, fmt.Errorf("command not started: %w", err)
	}
	c.active.Add(1)
	defer c.active.Add(-1)
	if err := sess.Start(cmd.Cmd); err != nil {
		_ = sess.Close()
		// Refused by the host, the command did not start; but when the
		// connection went down meanwhile, the request may have reached it.
		err = c.sessionError("start the command", err)
		if !errors.Is(err, ErrConnectionLost) {
			err = notStarted(err)
		}
		return unknown, err
	}

	// Wait runs in a goroutine of the Client, not of Run, so that Run can
	// give up on a session the host keeps open after a kill.
	ended := make(chan error, 1)
	if !c.goTracked(func() { ended <- sess.Wait() }) {
		_ = sess.Close()
		return unknown, fmt.Errorf("command: ssh client closed: %w", net.ErrClosed)
	}
	var stdinDone chan error
	if stdin != nil {
		stdinDone = make(chan error, 1)
		if !c.goTracked(func() { stdinDone <- copyStdin(stdin, cmd.Stdin) }) {
			_ = stdin.Close()
			stdinDone = nil
		}
	}

	var waitErr error
	select {
	case waitErr = <-ended:
	case <-ctx.Done():
		k := c.kill(sess, ended)
		if k.sent == "" && k.ended {
			waitErr = k.waitErr // it ended on its own as ctx ended
			break
		}
		out.detach()
		if stdinDone != nil {
			stdinEnded(cmd.Stdin) // ended or abandoned: nothing more will be asked
		}
		res := unknown
		var sessErr error
		if k.ended {
			res, sessErr = c.outcome(k.waitErr)
			if stdinDone != nil {
				// The channel is closed: the copy stops at its next write. A
				// read error of the input no longer matters to a killed command.
				<-stdinDone //nolint:errcheck // see above
			}
		}
		return res, k.error(ctx, sessErr)
	}
	_ = sess.Close()
	var stdinErr error
	if stdinDone != nil {
		stdinEnded(cmd.Stdin)
		stdinErr = <-stdinDone
	}

	res, err := c.outcome(waitErr)
	stdoutErr, stderrErr := out.errs()
	switch {
	case err != nil:
		return res, err
	case stdoutErr != nil:
		return res, fmt.Errorf("write stdout: %w", stdoutErr)
	case stderrErr != nil:
		return res, fmt.Errorf("write stderr: %w", stderrErr)
	case stdinErr != nil:
		return res, fmt.Errorf("read stdin: %w", stdinErr)
	}
	return res, nil
}

// outcome turns the session's end into a Result, or an error when the
// session broke without reporting how the command ended.
func (c *Client) outcome(waitErr error) (Result, error) {
	if waitErr == nil {
		return Result{}, nil
	}
	var ee *ssh.ExitError
	if errors.As(waitErr, &ee) {
		if sig := ee.Signal(); sig != "" {
			return Result{ExitCode: -1, Signal: sig}, nil
		}
		return Result{ExitCode: ee.ExitStatus()}, nil
	}
	return Result{ExitCode: -1}, c.sessionError("command", waitErr)
}

// sessionError explains a failed session operation, telling a lost
// connection (ErrConnectionLost), a closed Client and a host that refused.
// openSession opens a session for Run. It does not wait on the library
// alone: x/crypto/ssh waits for the host's answer on a channel that nothing
// closes when the connection ends just as the session is asked for, so a
// Run racing the end of its connection (or Close) would hang for good. It
// gives up when the connection ends or ctx does; a session the library
// opens after that is closed unused.
func (c *Client) openSession(ctx context.Context) (*ssh.Session, error) {
	if c.closing.Load() {
		return nil, notStarted(fmt.Errorf("open a session: ssh client closed: %w", net.ErrClosed))
	}
	type opened struct {
		sess *ssh.Session
		err  error
	}
	res := make(chan opened, 1)
	go func() {
		s, err := c.ssh.NewSession()
		res <- opened{s, err}
	}()
	var err error
	select {
	case o := <-res:
		if o.err != nil {
			return nil, notStarted(c.sessionError("open a session", o.err))
		}
		return o.sess, nil
	case <-c.done:
		err = notStarted(c.sessionError("open a session", io.EOF))
	case <-ctx.Done():
		err = fmt.Errorf("command not started: %w", ctx.Err())
	}
	go func() {
		if o := <-res; o.sess != nil {
			_ = o.sess.Close()
		}
	}()
	return nil, err
}

func (c *Client) sessionError(op string, err error) error {
	var oc *ssh.OpenChannelError
	if errors.As(err, &oc) {
		return plain(err, "%s: the host refused a new session (%s)", op, oc.Message)
	}
	t := time.NewTimer(connEndWait)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		var missing *ssh.ExitMissingError
		if errors.As(err, &missing) {
			return plain(err, "%s: the host ended the session without an exit status", op)
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	switch {
	case c.closing.Load():
		return fmt.Errorf("%s: ssh client closed: %w", op, net.ErrClosed)
	case c.lost.Load():
		return fmt.Errorf("%s: %w: no keepalive reply for %v", op, ErrConnectionLost, c.lostAfter())
	}
	return fmt.Errorf("%s: %w: the connection was closed by the host or the network", op, ErrConnectionLost)
}

// killReport is what kill did.
type killReport struct {
	sent     string // "KILL", "TERM", "TERM, then KILL after 5s"; "" if the command ended first
	fallback bool   // the host refused the signal request and a kill was run in a second session
	problem  string // why the kill may have failed
	ended    bool   // the session ended: waitErr is how
	waitErr  error
}

// kill ends a running command. The signal request goes first because,
// without a PTY, closing the session (or the whole connection) leaves the
// process running; OpenSSH ≥ 7.9 delivers the signal to the command's
// process group. It waits for the session to end at most KillGrace (after
// TERM) plus killWait (after KILL), then closes the session and gives up.
func (c *Client) kill(sess *ssh.Session, ended <-chan error) killReport {
	var k killReport
	waitEnd := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case k.waitErr = <-ended:
			k.ended = true
		case <-t.C:
		}
		return k.ended
	}
	select {
	case k.waitErr = <-ended:
		k.ended = true
		return k
	default:
	}
	if c.cfg.KillGrace > 0 {
		k.sent = "TERM"
		c.signal(sess, ssh.SIGTERM, &k)
		if waitEnd(c.cfg.KillGrace) {
			return k
		}
		k.sent = fmt.Sprintf("TERM, then KILL after %v", c.cfg.KillGrace)
	} else {
		k.sent = "KILL"
	}
	c.signal(sess, ssh.SIGKILL, &k)
	if waitEnd(killWait) {
		return k
	}
	// Something holds the session open: a child that left the process
	// group with the output pipes, or a kill that failed. Closing our side
	// frees nothing on the host, which keeps the channel until the process
	// exits, so Run stops waiting; the Wait goroutine belongs to the Client.
	_ = sess.Close()
	if k.problem == "" {
		k.problem = "the host did not confirm that the process ended"
	}
	return k
}

// signal sends sig to the command with a reply requested, to learn whether
// the host delivered it. OpenSSH refuses for root logins (they have no
// privilege separation child to do it), for ForceCommand sessions and
// before 7.9; then, if this is the Client's only command, the kill is done
// from a second session instead.
func (c *Client) signal(sess *ssh.Session, sig ssh.Signal, k *killReport) {
	ok, err := sess.SendRequest(c.signalRequest, true, ssh.Marshal(struct{ Signal string }{string(sig)}))
	switch {
	case err != nil || ok:
		// Delivered, or the session is already gone (err): nothing to add.
		return
	case c.active.Load() > 1:
		k.problem = "the host refused the signal request, and with other commands running on the connection a fallback kill cannot tell them apart"
		return
	}
	if err := c.killFromSecondSession(sig); err != nil {
		k.problem = fmt.Sprintf("the host refused the signal request and the fallback kill failed (%v)", err)
		return
	}
	k.fallback = true
}

// fallbackKillScript signals the process group of each other session of
// this connection: the sessions are the children of the sshd process that
// serves the connection, which is this shell's parent (the login shell has
// exec'd sh, so $$ is this session's leader), and each session leader leads
// its process group. The group is signalled as one (kill -- -PGID), so a
// shell cannot slip past the kill and run its next command while its child
// dies. It is POSIX sh, ps and awk, fed on stdin so that the login shell,
// whatever it is, only has to run "exec /bin/sh -s".
const fallbackKillScript = `sig=$1
for p in $(ps -A -o pid= -o ppid= | awk -v parent="$PPID" -v me="$$" '$2 == parent && $1 != me { print $1 }'); do
	kill -s "$sig" -- "-$p" 2>/dev/null
done
exit 0
`

// killFromSecondSession runs fallbackKillScript. Run calls it only when its
// command is the Client's only one, so the other sessions are that command.
func (c *Client) killFromSecondSession(sig ssh.Signal) error {
	sess, err := c.ssh.NewSession()
	if err != nil {
		return err
	}
	defer func() { _ = sess.Close() }() // Run's error is the one that counts
	sess.Stdin = strings.NewReader(fallbackKillScript)
	return sess.Run("exec /bin/sh -s " + string(sig))
}

// error is Run's error after a kill: it wraps ctx.Err() (timeout or
// cancel) and, when the session broke, the session's error too.
func (k *killReport) error(ctx context.Context, sessErr error) error {
	what := "canceled"
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		what = "timed out"
	}
	msg := fmt.Sprintf("command %s; sent %s", what, k.sent)
	if k.fallback {
		msg += " (from a second session: the host refused the signal request)"
	}
	if k.problem != "" {
		msg += "; " + k.problem + ", it may still be running"
	}
	if cause := context.Cause(ctx); cause != nil && cause != ctx.Err() {
		msg += " (" + cause.Error() + ")"
	}
	if sessErr != nil {
		return fmt.Errorf("%s: %w; %w", msg, ctx.Err(), sessErr)
	}
	return fmt.Errorf("%s: %w", msg, ctx.Err())
}

// outputs adapts the caller's writers: it serializes them when they are one
// writer; it swallows their errors so that a failing writer cannot stall the
// command (an unread channel stops the remote process on its next write);
// and detach cuts them off when Run gives up on a session.
type outputs struct {
	stdout, stderr streamWriter
	mu             [2]sync.Mutex
}

type streamWriter struct {
	mu       *sync.Mutex // shared by both streams when they are one writer
	w        io.Writer
	err      error // the first write error; later output is discarded
	detached bool  // Run has returned: the writer is no longer ours
}

func (o *outputs) attach(sess *ssh.Session, stdout, stderr io.Writer) {
	o.stdout.mu, o.stderr.mu = &o.mu[0], &o.mu[1]
	if stdout != nil {
		o.stdout.w = stdout
		sess.Stdout = &o.stdout
	}
	if stderr != nil {
		o.stderr.w = stderr
		sess.Stderr = &o.stderr
		if stdout != nil && sameWriter(stdout, stderr) {
			o.stderr.mu = o.stdout.mu
		}
	}
}

// detach returns once no write is in progress and none will reach the
// caller's writers any more.
func (o *outputs) detach() {
	for _, s := range []*streamWriter{&o.stdout, &o.stderr} {
		s.mu.Lock()
		s.detached = true
		s.mu.Unlock()
	}
}

// errs returns the first write error of each stream.
func (o *outputs) errs() (stdout, stderr error) {
	o.stdout.mu.Lock()
	stdout = o.stdout.err
	o.stdout.mu.Unlock()
	o.stderr.mu.Lock()
	stderr = o.stderr.err
	o.stderr.mu.Unlock()
	return stdout, stderr
}

func (s *streamWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil && !s.detached {
		if _, err := s.w.Write(p); err != nil {
			s.err = err
		}
	}
	return len(p), nil
}

// ReadFrom is what io.Copy in x/crypto/ssh uses to move a stream's output
// to s: it reads with a buffer that starts small and doubles only while
// reads fill it (up to readBufMax), where io.Copy would allocate 32 KiB per
// stream up front, so an idle or quiet session holds a few hundred bytes.
// Each chunk is written before the next read, as io.Copy does, so the
// channel's back-pressure is unchanged.
func (s *streamWriter) ReadFrom(r io.Reader) (int64, error) {
	buf := make([]byte, readBufMin)
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			total += int64(n)
			_, _ = s.Write(buf[:n]) // never fails: errors are kept in s.err
			if n == len(buf) && len(buf) < readBufMax {
				buf = make([]byte, 2*len(buf))
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// The bounds of ReadFrom's buffer: the first read's, and the most it grows
// to (io.Copy's size).
const (
	readBufMin = 512
	readBufMax = 32 << 10
)

// sameWriter reports a == b without panicking on writers of a type that
// cannot be compared.
func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}

// stdinEnded tells a Stdin that waits on the command's output that the
// command has ended.
func stdinEnded(r io.Reader) {
	if e, ok := r.(interface{ CommandEnded() }); ok {
		e.CommandEnded()
	}
}

// copyStdin feeds r to the command and closes its stdin. A write error
// means the command ended or closed its stdin: not worth reporting. A read
// error is reported, as the command saw a truncated input.
func copyStdin(w io.WriteCloser, r io.Reader) error {
	src := readErrRecorder{r: r}
	_, _ = io.Copy(w, &src)
	_ = w.Close()
	return src.err
}

type readErrRecorder struct {
	r   io.Reader
	err error
}

func (r *readErrRecorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}
