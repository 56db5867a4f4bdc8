package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/fleet"
	"github.com/testum/testum/libs/remote"
	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// hostTask is one host of a run on this executor: claimed, connected,
// executed, streamed, archived and recorded.
type hostTask struct {
	e       *Executor
	msg     jetstream.Msg
	run     testum.Run
	host    testum.RunHost
	attempt int
	log     *slog.Logger

	ctx      context.Context
	cancelFn context.CancelCauseFunc
	out      *transcript
	hold     *runHold // the run's platform rows and credentials, shared with its other hosts
	sudoPass string   // the platform's login password, for sudo -S
	dials    int      // SSH dials made for the host's connection (retries included)
}

func newHostTask(e *Executor, msg jetstream.Msg, run testum.Run, host testum.RunHost, attempt int) *hostTask {
	return &hostTask{
		e: e, msg: msg, run: run, host: host, attempt: attempt,
		log: e.log.With("run", run.ID, "host", host.Name, "idx", host.Idx, "attempt", attempt),
	}
}

// cancel ends the task's session with a cause (canceled or shutdown).
func (t *hostTask) cancel(cause error) {
	if t.cancelFn != nil {
		t.cancelFn(cause)
	}
}

// outcome is how a host ended.
type outcome struct {
	state  testum.HostState
	exit   *int
	signal string
	err    string
}

// execute runs the host to a final state. hardCtx ends only when the
// executor gives up draining.
func (t *hostTask) execute(hardCtx context.Context) {
	t.ctx, t.cancelFn = context.WithCancelCause(hardCtx)
	defer t.cancelFn(nil)
	t.hold = t.e.holds.take(t.run.ID)
	defer t.hold.release()
	t.out = newTranscript(hardCtx, t.e.transcriptConfig(), t.run.ID, t.host.Idx, t.attempt, t.host.Name, t.outputCap())
	t.e.register(t)
	defer t.e.unregister(t)

	oc := t.connectAndRun()
	t.finish(hardCtx, oc)
}

func (t *hostTask) outputCap() int64 {
	if c := t.run.Spec.OutputCapBytes; c > 0 {
		return c
	}
	return t.e.cfg.OutputCap
}

func (t *hostTask) connectAndRun() outcome {
	ctx := t.ctx
	if t.run.CancelRequested || t.run.State.Final() {
		return outcome{state: testum.HostCanceled, err: "the run was canceled before the host started"}
	}
	t.out.status(testum.HostConnecting)

	var (
		target   sshx.Target
		platform testum.Platform
		spec     testum.RunSpec
		secrets  []string
	)
	err := whileUnavailable(ctx, t.log, "read the host's platform", func(ctx context.Context) (err error) {
		target, platform, err = t.target(ctx)
		return err
	})
	t.sudoPass = target.Password
	if err != nil {
		return t.notStarted(ctx, err)
	}
	err = whileUnavailable(ctx, t.log, "read the run's secret env", func(ctx context.Context) (err error) {
		spec, secrets, err = t.spec(ctx, target)
		return err
	})
	t.out.maskSecrets(secrets)
	if err != nil {
		return t.notStarted(ctx, err)
	}

	key := targetKey(platform.ID, target)
	client, reused, failed := t.connect(ctx, key, target, platform, true)
	if failed != nil {
		return *failed
	}
	if !reused {
		key = targetKey(platform.ID, pinnedTarget(target, client))
	}
	keep := false
	defer func() {
		switch {
		case client == nil:
		case keep:
			t.e.pool.put(key, client, time.Now())
		default:
			_ = client.Close()
		}
	}()
	var ok bool
	err = whileUnavailable(ctx, t.log, "mark the host running", func(ctx context.Context) (err error) {
		_, ok, err = t.e.runnings.do(ctx, store.Running{Run: t.run.ID, Idx: t.host.Idx, Attempt: t.attempt, Platform: platform.ID})
		return err
	})
	if err != nil && ctx.Err() != nil {
		return t.interrupted(ctx, nil)
	}
	if err != nil || !ok {
		// The reaper took the host from us (we looked dead), or the database is
		// gone: do not start a command nobody would account for.
		return outcome{state: testum.HostLost, err: "the host was no longer assigned to this executor when the command was about to start"}
	}
	t.out.status(testum.HostRunning)

	limit, why := t.commandLimit()
	if limit <= 0 {
		return outcome{state: testum.HostSkipped, err: why + " before the command started"}
	}
	cmdCtx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmdLine, stdin, become := remote.Build(spec, t.sudoPass)
	command := sshx.Command{Cmd: cmdLine, Stdin: stdin, Stdout: t.out.writer(bus.TypeStdout), Stderr: t.out.writer(bus.TypeStderr)}
	if become != nil {
		command.Stdout, command.Stderr = become.Stdout(command.Stdout), become.Stderr(command.Stderr)
		defer become.Flush() // before finish closes the transcript
	}
	cmdStart := time.Now()
	res, err := client.Run(cmdCtx, command)
	if reused && errors.Is(err, sshx.ErrNotStarted) && cmdCtx.Err() == nil {
		// The kept connection broke between its ping and the command, which
		// did not start: start it on a new connection.
		t.log.Debug("kept connection failed; dialing anew", "err", err)
		_ = client.Close()
		if client, _, failed = t.connect(ctx, key, target, platform, false); failed != nil {
			client = nil
			return *failed
		}
		res, err = client.Run(cmdCtx, command)
	}
	t.e.m.CommandDuration.Observe(time.Since(cmdStart).Seconds())
	// Only a connection whose command ended normally is kept: after a
	// timeout or cancel the host may still be busy killing it.
	keep = err == nil
	switch {
	case become != nil && become.Refused() && ctx.Err() == nil && cmdCtx.Err() == nil:
		// sudo asked again: the stdin was closed so that it gave up.
		return outcome{state: testum.HostFailed, exit: intp(res.ExitCode), err: remote.PasswordRefused}
	case err != nil && ctx.Err() != nil:
		return t.interrupted(ctx, &res)
	case err != nil && cmdCtx.Err() != nil:
		return outcome{state: testum.HostTimeout, signal: res.Signal, err: why + "; the remote process was killed"}
	default:
		return commandOutcome(res, err)
	}
}

// commandOutcome maps how Run ended, neither canceled nor timed out, to the
// host's state. A connection that died is unreachable only when the command
// certainly never started; once it may have started it is lost (it may have
// finished, or still run on the host), so it is never taken for a host that
// was not reached, nor run again unless the run retries lost hosts.
func commandOutcome(res sshx.Result, err error) outcome {
	switch {
	case err == nil && res.Signal != "":
		return outcome{state: testum.HostFailed, signal: res.Signal, exit: intp(res.ExitCode), err: "killed by signal " + res.Signal}
	case err == nil && res.ExitCode == 0:
		return outcome{state: testum.HostOK, exit: intp(0)}
	case err == nil:
		return outcome{state: testum.HostFailed, exit: intp(res.ExitCode)}
	case errors.Is(err, sshx.ErrConnectionLost) && errors.Is(err, sshx.ErrNotStarted):
		return outcome{state: testum.HostUnreachable, err: "connection lost before the command started: " + err.Error()}
	case errors.Is(err, sshx.ErrConnectionLost):
		return outcome{state: testum.HostLost,
			err: "connection lost after the command started; it may or may not have finished: " + err.Error()}
	default:
		return outcome{state: testum.HostFailed, err: err.Error()}
	}
}

// connect returns a connection to the host: a kept one that still answers
// (reused), or a new one whose host key is pinned on first contact. On
// failure it returns the host's outcome instead.
func (t *hostTask) connect(ctx context.Context, key string, target sshx.Target, platform testum.Platform, reuse bool) (c *sshx.Client, reused bool, failed *outcome) {
	fail := func(oc outcome) (*sshx.Client, bool, *outcome) { return nil, false, &oc }
	if reuse {
		if c := t.e.pool.get(key); c != nil {
			pctx, cancel := context.WithTimeout(ctx, t.e.cfg.ConnectTimeout)
			err := c.Ping(pctx)
			cancel()
			if err == nil {
				return c, true, nil
			}
			_ = c.Close()
		}
	}
	// Parsed here, after the pool had its chance: a kept connection needs no
	// key at all.
	target, err := t.e.signers.apply(ctx, t.run.ID, target)
	if err != nil {
		if ctx.Err() != nil {
			return fail(t.interrupted(ctx, nil))
		}
		msg := fmt.Sprintf("ssh %s: cannot use the private key: %v", target.Addr, err)
		t.recordContact(platform.ID, testum.PlatformState(testum.HostAuthFailed), msg)
		return fail(outcome{state: testum.HostAuthFailed, err: msg})
	}
	client, err := t.dial(ctx, target)
	if err != nil {
		if ctx.Err() != nil {
			return fail(t.interrupted(ctx, nil))
		}
		return fail(t.dialFailed(ctx, platform, err))
	}
	// Every hop's key seen for the first time is pinned on its own
	// platform, jump hosts included, before the connection is used.
	pinned, err := fleet.PinFirstContacts(ctx, t.e.st, client.Hops())
	t.hold.pinned(pinned)
	for _, h := range pinned {
		t.log.Info("host key pinned on first contact", "platform", h.ID, "addr", h.Addr, "fingerprint", sshx.Fingerprint(h.HostKey))
	}
	if err != nil {
		_ = client.Close()
		return fail(outcome{state: testum.HostHostKeyRejected, err: fmt.Sprintf("ssh %s: %v", target.Addr, err)})
	}
	return client, false, nil
}

// Dials retried after the host shed the handshake (sshx.PreAuth): nothing
// ran on the host yet, so a retry cannot run anything twice. A failure
// once a session channel is open is never retried: that is Run's, not the
// dial's.
const (
	maxDialAttempts = 3
	dialRetryBase   = 200 * time.Millisecond
)

// dial connects to the host under the executor's handshake window, again
// after a jittered pause when the host reset or closed the connection
// before authentication completed, at most maxDialAttempts times.
func (t *hostTask) dial(ctx context.Context, target sshx.Target) (*sshx.Client, error) {
	cfg := sshx.Config{ConnectTimeout: t.e.cfg.ConnectTimeout, KeepAlive: t.e.cfg.KeepAlive, Deny: t.e.cfg.TargetDeny}
	pauses := dialRetryBackoff()
	for {
		tk, err := t.e.handshakes.acquire(ctx, target.Addr)
		if err != nil {
			return nil, err
		}
		t.dials++
		start := time.Now()
		client, err := sshx.Dial(ctx, target, cfg)
		tk.done(handshakeOutcome(ctx, err))
		t.e.m.dialed(ctx, start, err)
		if err == nil || ctx.Err() != nil || !sshx.PreAuth(err) || t.dials >= maxDialAttempts {
			return client, err
		}
		d, _ := pauses.Next()
		t.log.Debug("the host dropped the handshake before authentication; dialing again",
			"dials", t.dials, "pause", d, "err", err)
		t.e.m.SSHHandshakeRetries.Inc()
		if !pause(ctx, d) {
			return nil, ctx.Err()
		}
	}
}

// handshakeOutcome is what a dial says about the host's load.
func handshakeOutcome(ctx context.Context, err error) handshakeResult {
	switch {
	case err == nil:
		return handshakeOK
	case ctx.Err() == nil && sshx.Overloaded(err):
		return handshakeOverloaded
	}
	return handshakeNeutral
}

// commandLimit is how long the command may run: the per-host timeout, or
// less when the run's deadline comes first; why says which limit it is.
func (t *hostTask) commandLimit() (time.Duration, string) {
	timeout := time.Duration(t.run.Spec.TimeoutSeconds) * time.Second
	limit, why := timeout, fmt.Sprintf("command timed out after %s", timeout)
	if d := t.run.Spec.DeadlineSecs; d > 0 && t.run.StartedAt != nil {
		if left := time.Until(t.run.StartedAt.Add(time.Duration(d) * time.Second)); left < limit {
			limit, why = left, fmt.Sprintf("the run deadline of %s passed", time.Duration(d)*time.Second)
		}
	}
	return limit, why
}

// interrupted maps the end of ctx to canceled (by request) or lost
// (the executor shut down before the command finished).
func (t *hostTask) interrupted(ctx context.Context, res *sshx.Result) outcome {
	oc := outcome{state: testum.HostCanceled, err: "canceled"}
	if !errors.Is(context.Cause(ctx), errCanceled) {
		oc = outcome{state: testum.HostLost, err: errShutdown.Error()}
	}
	if res != nil {
		oc.signal = res.Signal
	}
	return oc
}

// dialFailed maps a dial error to a host state and remembers a rejected
// host key, on the platform of the hop that offered it (the target or a
// jump host), for an extended_admin to accept.
func (t *hostTask) dialFailed(ctx context.Context, p testum.Platform, err error) outcome {
	var de *sshx.DialError
	if !errors.As(err, &de) {
		t.recordContact(p.ID, testum.PlatformState(testum.HostUnreachable), err.Error())
		return outcome{state: testum.HostUnreachable, err: err.Error()}
	}
	state := testum.HostState(de.Failure)
	if !state.Valid() {
		state = testum.HostUnreachable
	}
	if _, err := fleet.RecordOffered(ctx, t.e.st, de); err != nil {
		t.log.Warn("recording offered host key", "err", err)
	}
	msg := fleet.DescribeDialError(ctx, t.e.st, de)
	t.recordContact(p.ID, testum.PlatformState(state), msg)
	if de.Hop != "" && de.HopID != 0 && de.HopID != p.ID {
		t.recordContact(de.HopID, testum.PlatformState(state), msg) // the jump host failed: its own state says so
	}
	return outcome{state: state, err: msg}
}

func (t *hostTask) recordContact(platform int64, state testum.PlatformState, detail string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.ctx), 5*time.Second)
	defer cancel()
	if err := t.e.st.PlatformRecordContact(ctx, platform, state, detail); err != nil {
		t.log.Debug("recording platform contact", "err", err)
	}
}

// target builds the SSH target of the host's platform, with its jump chain.
func (t *hostTask) target(ctx context.Context) (sshx.Target, testum.Platform, error) {
	if t.host.PlatformID == nil {
		return sshx.Target{}, testum.Platform{}, errors.New("the platform of this host was deleted")
	}
	p, err := t.hold.Platform(ctx, *t.host.PlatformID)
	if err != nil {
		return sshx.Target{}, p, fmt.Errorf("reading platform: %w", err)
	}
	tgt, err := fleet.Target(ctx, t.hold, p, t.e.cfg.HostKeyPolicy)
	return tgt, p, err
}

// finish records the outcome: output first, then the row, then the
// transcript's error, exit and status, then the event, then the ack. A host is
// acknowledged only once its result is in PostgreSQL.
func (t *hostTask) finish(hardCtx context.Context, oc outcome) {
	oc.err = t.out.maskText(oc.err)
	stats := t.out.close()
	logKey, archErr := t.out.archive(hardCtx, t.e.logs)
	if archErr != nil {
		t.log.Error("archiving the host's log failed", "err", archErr)
		if oc.err == "" {
			oc.err = "output could not be archived: " + archErr.Error()
		}
	}
	res := store.HostResult{
		State: oc.state, ExitCode: oc.exit, Signal: oc.signal, Error: oc.err,
		OutputBytes: stats.bytes, Truncated: stats.truncated, OutputDigest: stats.digest, LogKey: logKey,
		ConnectAttempts: t.dials,
	}
	var recorded bool
	err := keepTrying(hardCtx, t.log, "record host result", func(ctx context.Context) error {
		var err error
		_, recorded, err = t.e.finishes.do(ctx, store.Finish{Run: t.run.ID, Idx: t.host.Idx, Attempt: t.attempt, Result: res})
		return err
	})
	if err != nil {
		// The executor is going away without recording: the reaper will
		// declare the host lost once the heartbeat stops. Hand the message back.
		_ = t.msg.Nak()
		return
	}
	if !recorded {
		// Nothing of this attempt is announced: the host's record and
		// transcript now belong to whoever took it over.
		t.log.Warn("host was no longer this executor's to finish (declared lost meanwhile)", "state", oc.state)
	} else {
		t.e.m.hostEnded(oc.state)
		if oc.err != "" && oc.state != testum.HostOK {
			t.out.errorText(oc.err)
		}
		t.out.exit(oc.state, oc.exit, oc.signal)
		t.out.closeControl()
		t.e.publishEvent(bus.Event{RunID: t.run.ID, Kind: bus.EventHost, Idx: t.host.Idx, Host: t.host.Name, State: string(oc.state), ExitCode: oc.exit})
	}
	if err := t.msg.Ack(); err != nil {
		t.log.Debug("ack failed", "err", err)
	}
	t.log.Debug("host finished", "state", oc.state)
}

// finishEarly ends a claimed host that could not even be prepared.
func (t *hostTask) finishEarly(hardCtx context.Context, state testum.HostState, msg string) {
	_ = keepTrying(hardCtx, t.e.log, "record host result", func(ctx context.Context) error {
		_, _, err := t.e.st.RunHostFinish(ctx, t.run.ID, t.host.Idx, t.attempt, t.e.cfg.ID, store.HostResult{State: state, Error: msg})
		return err
	})
	t.e.m.hostEnded(state)
	t.e.publishEvent(bus.Event{RunID: t.run.ID, Kind: bus.EventHost, Idx: t.host.Idx, Host: t.host.Name, State: string(state)})
	_ = t.msg.Ack()
}

// publishEvent announces a transition on the run's event subject (core
// NATS); the coordinator wakes on it. Best effort: coordinators also poll.
func (e *Executor) publishEvent(ev bus.Event) {
	ev.At = time.Now().UTC()
	if err := bus.PublishEvent(e.nc, ev); err != nil {
		e.log.Debug("publishing event", "run", ev.RunID, "err", err)
	}
}

// notStarted is the outcome of a host whose preparation failed before it
// connected: the run's cancel or deadline if that is what ended it, else
// failed with the error.
func (t *hostTask) notStarted(ctx context.Context, err error) outcome {
	if ctx.Err() != nil {
		return t.interrupted(ctx, nil)
	}
	return outcome{state: testum.HostFailed, err: err.Error()}
}

// whileUnavailable calls fn until it answers anything but "the database is
// unavailable" (PostgreSQL down or restarting), or ctx ends. It is for the
// reads and writes before a command starts: nothing has run yet, so waiting
// for PostgreSQL costs only time, where giving up would fail a host that
// did nothing wrong.
func whileUnavailable(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	var last error
	err := retryUntil(ctx, dependencyBackoff(), 15*time.Second, log, what, func(ctx context.Context) error {
		last = fn(ctx)
		if testum.CodeOf(last) == testum.CodeUnavailable {
			return last
		}
		return nil
	})
	if err != nil {
		return err
	}
	return last
}

// keepTrying calls fn until it succeeds or ctx ends: a database restart must not
// lose a result.
func keepTrying(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	return retryUntil(ctx, dependencyBackoff(), 15*time.Second, log, what, fn)
}

func intp(v int) *int { return &v }
