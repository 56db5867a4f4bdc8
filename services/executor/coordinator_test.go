package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/logstore"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testenv"
	"github.com/testum/testum/libs/testum"
)

// coordMsg stands for a run's JetStream message held by a coordinator and
// counts what the coordinator answers on it.
type coordMsg struct {
	jetstream.Msg
	acks, naks atomic.Int32
}

func (m *coordMsg) Ack() error                         { m.acks.Add(1); return nil }
func (m *coordMsg) Nak() error                         { m.naks.Add(1); return nil }
func (m *coordMsg) NakWithDelay(time.Duration) error   { m.naks.Add(1); return nil }
func (m *coordMsg) InProgress() error                  { return nil }
func (m *coordMsg) Term() error                        { m.naks.Add(1); return nil }
func (m *coordMsg) TermWithReason(reason string) error { m.naks.Add(1); return nil }

// coordFixture is a real PostgreSQL and NATS (with the streams) for
// coordinators of executors built on them.
type coordFixture struct {
	st       *store.Store
	js       jetstream.JetStream
	nc       *nats.Conn
	platform testum.Platform
}

func newCoordFixture(t *testing.T) *coordFixture {
	t.Helper()
	ctx := t.Context()
	url := testenv.Postgres(t)
	if err := store.Migrate(ctx, url, nil); err != nil {
		t.Fatal(err)
	}
	// Silence counts from long before a server that may have started
	// seconds ago, so that an executor's heartbeat moved back an hour is
	// an hour of silence.
	st, err := store.Open(ctx, store.Config{URL: url, MaxConns: 4, Sealer: plainSealer{},
		HeardSince: func() time.Time { return time.Unix(0, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	srv := testenv.NATS(t)
	nc, js := srv.JetStream(t)
	if err := bus.EnsureStreams(ctx, js, bus.StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	var p testum.Platform
	err = st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		p, err = tx.PlatformCreate(ctx, store.NewPlatform{Name: "web", Host: "127.0.0.1", Port: 22, Username: "u",
			AuthMethod: testum.AuthPassword, Secret: &store.NewSecret{Kind: testum.AuthPassword, Secret: []byte("pw")}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return &coordFixture{st: st, js: js, nc: nc, platform: p}
}

// executor builds (does not start) an executor and registers it alive.
func (f *coordFixture) executor(t *testing.T, id string, log *slog.Logger) *Executor {
	t.Helper()
	logs, err := logstore.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{ID: id, SpoolDir: t.TempDir(), Logger: log}, Deps{Store: f.st, NATS: f.nc, Logs: logs})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.ExecutorRegister(t.Context(), id, "host", 1, 4); err != nil {
		t.Fatal(err)
	}
	return e
}

// run creates a run of n hosts over the fixture's platform.
func (f *coordFixture) run(t *testing.T, n, parallelism int) testum.Run {
	t.Helper()
	nr := store.NewRun{ID: uuid.New(), Command: "true", CreatedByName: "alice",
		Spec: testum.RunSpec{Command: "true", TimeoutSeconds: 60, Parallelism: parallelism}}
	for i := range n {
		nr.Hosts = append(nr.Hosts, store.NewRunHost{PlatformID: f.platform.ID, Name: fmt.Sprintf("web%03d", i), Address: "127.0.0.1"})
	}
	run, err := f.st.RunCreate(t.Context(), nr)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// coordinator makes e the run's coordinator, as takeRun does.
func (f *coordFixture) coordinator(t *testing.T, e *Executor, id uuid.UUID) (*RunCoordinator, *coordMsg) {
	t.Helper()
	run, ok, err := f.st.RunCoordinate(t.Context(), id, e.cfg.ID, e.cfg.DeadAfter)
	if err != nil || !ok {
		t.Fatalf("%s coordinates run %s: %v %v", e.cfg.ID, id, ok, err)
	}
	plan, err := planFanout(run)
	if err != nil {
		t.Fatal(err)
	}
	msg := &coordMsg{}
	return &RunCoordinator{e: e, msg: msg, run: run, plan: plan, wake: make(chan struct{}, 1),
		log: e.log.With("run", run.ID, "role", "coordinator")}, msg
}

// takeOver does what a takeover does: executor from falls silent for
// longer than its liveness, and to takes the run.
func (f *coordFixture) takeOver(t *testing.T, run uuid.UUID, from, to *Executor) {
	t.Helper()
	if _, err := f.st.Pool().Exec(t.Context(), "UPDATE executors SET heartbeat_at = now() - interval '1 hour' WHERE id = $1", from.cfg.ID); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := f.st.RunCoordinate(t.Context(), run, to.cfg.ID, to.cfg.DeadAfter); err != nil || !ok || got.CoordinatorID != to.cfg.ID {
		t.Fatalf("%s takes the run over: %+v %v %v", to.cfg.ID, got, ok, err)
	}
}

// finishHost runs host idx to ok as executor ex would.
func (f *coordFixture) finishHost(t *testing.T, run uuid.UUID, idx int, ex string) {
	t.Helper()
	ctx := t.Context()
	h, ok, err := f.st.RunHostClaim(ctx, run, idx, 1, ex)
	if err != nil || !ok {
		t.Fatalf("claim host %d: %v %v", idx, ok, err)
	}
	if ok, err := f.st.RunHostSetRunning(ctx, run, idx, 1, ex, *h.PlatformID); err != nil || !ok {
		t.Fatalf("host %d running: %v %v", idx, ok, err)
	}
	zero := 0
	if _, ok, err := f.st.RunHostFinish(ctx, run, idx, 1, ex, store.HostResult{State: testum.HostOK, ExitCode: &zero}); err != nil || !ok {
		t.Fatalf("finish host %d: %v %v", idx, ok, err)
	}
}

// streamMsgs is how many messages a stream holds.
func (f *coordFixture) streamMsgs(t *testing.T, name string) uint64 {
	t.Helper()
	s, err := f.js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// A coordinator that paused after reading its run, and was taken over
// meanwhile (its liveness expired), acts on nothing stale when it resumes:
// whatever its step was about to do (release the next batch, cancel the
// hosts not started, finish the run) changes no row and publishes nothing;
// it leaves the run's message to the new coordinator and says once that it
// stops; the new coordinator carries on.
func TestCoordinatorTakenOverMidStepChangesNothing(t *testing.T) {
	t.Parallel()
	for name, prepare := range map[string]func(t *testing.T, f *coordFixture, run uuid.UUID){
		"release": func(t *testing.T, f *coordFixture, run uuid.UUID) { f.finishHost(t, run, 0, "ex-a") },
		"cancel": func(t *testing.T, f *coordFixture, run uuid.UUID) {
			if _, err := f.st.RunRequestCancel(t.Context(), run); err != nil {
				t.Fatal(err)
			}
		},
		"finish": func(t *testing.T, f *coordFixture, run uuid.UUID) {
			f.finishHost(t, run, 0, "ex-a")
			for _, idx := range []int{1, 2} {
				if ok, err := f.st.RunHostEndUnstarted(t.Context(), run, idx, testum.HostUnreachable, "no route"); err != nil || !ok {
					t.Fatalf("end host %d: %v %v", idx, ok, err)
				}
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			f := newCoordFixture(t)
			var logA testenv.LogBuffer
			a := f.executor(t, "ex-a", slog.New(slog.NewTextHandler(&logA, nil)))
			b := f.executor(t, "ex-b", slog.New(slog.DiscardHandler))
			run := f.run(t, 3, 1)
			ca, msgA := f.coordinator(t, a, run.ID)
			if done, err := ca.step(ctx, true); err != nil || done {
				t.Fatalf("first step: %v %v", done, err)
			}
			if rel, err := f.st.RunHosts(ctx, run.ID); err != nil || rel[0].ReleasedAt == nil || rel[1].ReleasedAt != nil {
				t.Fatalf("after the first step: %+v %v", rel, err)
			}
			prepare(t, f, run.ID)

			// What the step reads before the executor is paused.
			staleRun, err := f.st.Run(ctx, run.ID)
			if err != nil {
				t.Fatal(err)
			}
			staleProgress, err := f.st.RunProgress(ctx, run.ID)
			if err != nil {
				t.Fatal(err)
			}
			f.takeOver(t, run.ID, a, b)
			hostsBefore, err := f.st.RunHosts(ctx, run.ID)
			if err != nil {
				t.Fatal(err)
			}
			tasksBefore, outputBefore := f.streamMsgs(t, bus.StreamTasks), f.streamMsgs(t, bus.StreamOutput)

			// Resumed: the rest of the step, then its next one.
			if done, err := ca.advance(ctx, staleRun, staleProgress, false); err != nil || !done {
				t.Fatalf("the rest of the stale step: done %v, %v; want done", done, err)
			}
			if done, err := ca.step(ctx, false); err != nil || !done {
				t.Fatalf("the next step: done %v, %v; want done", done, err)
			}

			hostsAfter, err := f.st.RunHosts(ctx, run.ID)
			if err != nil {
				t.Fatal(err)
			}
			for i := range hostsBefore {
				hb, ha := hostsBefore[i], hostsAfter[i]
				if ha.State != hb.State || (ha.ReleasedAt == nil) != (hb.ReleasedAt == nil) {
					t.Errorf("host %d changed by the coordinator that lost the run: %s released %v, was %s released %v",
						i, ha.State, ha.ReleasedAt != nil, hb.State, hb.ReleasedAt != nil)
				}
			}
			if got, err := f.st.Run(ctx, run.ID); err != nil || got.State != testum.RunRunning || got.AbortReason != "" || got.CoordinatorID != "ex-b" {
				t.Errorf("run after the stale step: %+v %v", got, err)
			}
			if tasks, output := f.streamMsgs(t, bus.StreamTasks), f.streamMsgs(t, bus.StreamOutput); tasks != tasksBefore || output != outputBefore {
				t.Errorf("published by the coordinator that lost the run: tasks %d -> %d, output %d -> %d",
					tasksBefore, tasks, outputBefore, output)
			}
			if acks, naks := msgA.acks.Load(), msgA.naks.Load(); acks != 0 || naks != 0 {
				t.Errorf("the lost coordinator answered the run's message: %d acks, %d naks", acks, naks)
			}
			if lines := logA.Lines("stops coordinating it"); len(lines) != 1 {
				t.Errorf("the lost coordinator said it stops %d times, want once:\n%s", len(lines), logA.String())
			}

			// The new coordinator goes on from where the run is.
			cb, msgB := f.coordinator(t, b, run.ID)
			for range 4 {
				if done, err := cb.step(ctx, true); err != nil {
					t.Fatal(err)
				} else if done {
					break
				}
			}
			switch name {
			case "release":
				if hs, err := f.st.RunHosts(ctx, run.ID); err != nil || hs[1].ReleasedAt == nil {
					t.Errorf("the new coordinator released nothing: %+v %v", hs, err)
				}
			default:
				if got, err := f.st.Run(ctx, run.ID); err != nil || !got.State.Final() || msgB.acks.Load() != 1 {
					t.Errorf("the new coordinator did not finish the run: %+v %v (acks %d)", got, err, msgB.acks.Load())
				}
			}
		})
	}
}

// Canceling a run announces each host that had not started with a status
// message whose sequence starts at 1, without looking the host's subject
// up; a host that started before (its attempt requeued) continues the
// sequence of its transcript, which needs the lookup.
func TestCancelOfHostsNeverStartedLooksNothingUp(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newCoordFixture(t)
	a := f.executor(t, "ex-a", slog.New(slog.DiscardHandler))
	var lookups atomic.Int64
	a.lastSeq = func(ctx context.Context, run uuid.UUID, idx int) int {
		lookups.Add(1)
		return a.lastOutputSeq(ctx, run, idx)
	}
	const n, started = 300, 7
	run := f.run(t, n, 10)
	c, _ := f.coordinator(t, a, run.ID)
	if done, err := c.step(ctx, true); err != nil || done {
		t.Fatalf("first step: %v %v", done, err)
	}
	// Host 7 starts on an executor that then stops responding before its
	// command starts: it is queued again, with the beginning of a
	// transcript.
	if _, ok, err := f.st.RunHostClaim(ctx, run.ID, started, 1, "ex-gone"); err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	for seq := 1; seq <= 3; seq++ {
		m := bus.OutputMsg{Run: run.ID, Idx: started, Type: bus.TypeStatus, Host: "web007", Seq: seq, Attempt: 1,
			State: string(testum.HostConnecting), At: time.Now(), Data: []byte("connecting")}
		if err := a.output.PublishOutput(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if requeued, err := f.st.RunHostsRequeueUnstarted(ctx, "ex-gone"); err != nil || len(requeued) != 1 {
		t.Fatalf("requeue: %+v %v", requeued, err)
	}

	if _, err := f.st.RunRequestCancel(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	if done, err := c.step(ctx, false); err != nil || done {
		t.Fatalf("cancel step: %v %v", done, err)
	}
	if got := lookups.Load(); got != 1 {
		t.Errorf("%d lookups of a host's last message for a cancel of %d hosts, one of which had started; want 1", got, n)
	}
	stream, err := f.js.Stream(ctx, bus.StreamOutput)
	if err != nil {
		t.Fatal(err)
	}
	for idx := range n {
		raw, err := stream.GetLastMsgForSubject(ctx, bus.OutputSubject(run.ID, idx))
		if err != nil {
			t.Fatalf("host %d: no message: %v", idx, err)
		}
		m, err := bus.DecodeOutput(raw.Subject, raw.Header, raw.Data)
		if err != nil {
			t.Fatal(err)
		}
		want := 1
		if idx == started {
			want = 4
		}
		if m.Type != bus.TypeStatus || m.State != string(testum.HostCanceled) || m.Seq != want {
			t.Fatalf("host %d: last message %s %s seq %d, want status canceled seq %d", idx, m.Type, m.State, m.Seq, want)
		}
	}
	if hs, err := f.st.RunHosts(ctx, run.ID); err != nil || hs[0].State != testum.HostCanceled || !strings.HasPrefix(hs[0].Name, "web") {
		t.Fatalf("hosts after the cancel: %v", err)
	}
}

// A run's finish waits for its hosts' transcripts to end, but not for a
// host whose executor died between recording its result and announcing
// it: the coordinator ends that transcript on the dead executor's behalf
// (a final status continuing the host's sequence) and goes on.
func TestFinishEndsTheTranscriptOfADeadExecutorsHost(t *testing.T) {
	t.Parallel()
	f := newCoordFixture(t)
	e := f.executor(t, "ex-live", slog.New(slog.DiscardHandler))
	dead := f.executor(t, "ex-dead", slog.New(slog.DiscardHandler))
	run := f.run(t, 2, 2)
	f.finishHost(t, run.ID, 0, dead.cfg.ID)
	f.finishHost(t, run.ID, 1, e.cfg.ID)
	ctx := t.Context()
	zero := 0
	for _, m := range []bus.OutputMsg{
		{Run: run.ID, Idx: 0, Type: bus.TypeStdout, Host: "web000", Seq: 1, Attempt: 1, Data: []byte("hi\n")},
		{Run: run.ID, Idx: 1, Type: bus.TypeStdout, Host: "web001", Seq: 1, Attempt: 1, Data: []byte("hi\n")},
		{Run: run.ID, Idx: 1, Type: bus.TypeExit, Host: "web001", Seq: 2, Attempt: 1, State: "ok", ExitCode: &zero, Data: []byte("0")},
		{Run: run.ID, Idx: 1, Type: bus.TypeStatus, Host: "web001", Seq: 3, Attempt: 1, State: "ok", Data: []byte("ok")},
	} {
		m.At = time.Now()
		if err := e.output.PublishOutput(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// Host 0's executor dies with its exit and status unpublished.
	if _, err := f.st.Pool().Exec(ctx, "UPDATE executors SET heartbeat_at = now() - interval '1 hour' WHERE id = $1", dead.cfg.ID); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { e.awaitTranscripts(ctx, run.ID, 10*time.Minute); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the finish still waits for the transcript of a host whose executor died")
	}
	last, err := bus.LastHostMessages(ctx, f.js, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m := last[0]; m.Type != bus.TypeStatus || m.State != "ok" || m.Seq != 2 || m.Attempt != 0 {
		t.Errorf("host 0's transcript ends with %+v, want its ok status at seq 2 on behalf of no attempt", m)
	}
	if m := last[1]; m.Seq != 3 || m.Attempt != 1 {
		t.Errorf("host 1's transcript (its executor alive, ended) changed: %+v", m)
	}
}

// gatedPublisher stands between a coordinator and JetStream: decide says,
// for each task publish, whether it goes through (nil), fails with an
// error, or waits for its context to end (errBlock); acked, if set, hears
// of each publish that went through. It counts the publishes in flight.
type gatedPublisher struct {
	js       bus.Publisher
	decide   func(ctx context.Context, subject string) error
	acked    func(subject string)
	inFlight atomic.Int64
	most     atomic.Int64
}

var errBlock = errors.New("block until canceled")

func (p *gatedPublisher) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	n := p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	for {
		most := p.most.Load()
		if n <= most || p.most.CompareAndSwap(most, n) {
			break
		}
	}
	switch err := p.decide(ctx, m.Subject); {
	case errors.Is(err, errBlock):
		<-ctx.Done()
		return nil, ctx.Err()
	case err != nil:
		return nil, err
	}
	ack, err := p.js.PublishMsg(ctx, m, opts...)
	if err == nil && p.acked != nil {
		p.acked(m.Subject)
	}
	return ack, err
}

// taskSubjects maps the task subjects of a run's n hosts to their index.
func taskSubjects(run uuid.UUID, n int) map[string]int {
	out := make(map[string]int, n)
	for i := range n {
		out[bus.TaskSubject(run, i)] = i
	}
	return out
}

// tasksInStream reports which of a run's n hosts have a task in the stream.
func (f *coordFixture) tasksInStream(t *testing.T, run uuid.UUID, n int) []int {
	t.Helper()
	s, err := f.js.Stream(t.Context(), bus.StreamTasks)
	if err != nil {
		t.Fatal(err)
	}
	var in []int
	for i := range n {
		_, err := s.GetLastMsgForSubject(t.Context(), bus.TaskSubject(run, i))
		switch {
		case err == nil:
			in = append(in, i)
		case !bus.IsNotFound(err):
			t.Fatal(err)
		}
	}
	return in
}

// A release of 100 hosts is published publishInFlight tasks at a time:
// the first publishInFlight are all in flight at once (each waits for the
// others before it goes through, which one after the other would never
// happen), never more, and every task arrives once.
func TestCoordinatorPublishesAReleaseConcurrently(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newCoordFixture(t)
	e := f.executor(t, "ex-a", slog.New(slog.DiscardHandler))
	e.ackWait = 3 * time.Minute // each publish may wait a minute for the others (a hang guard)
	const n = 100
	run := f.run(t, n, n)
	subjects := taskSubjects(run.ID, n)
	all := make(chan struct{})
	var entered atomic.Int64
	gate := &gatedPublisher{js: e.pub, decide: func(ctx context.Context, subject string) error {
		if idx, ok := subjects[subject]; !ok || idx >= publishInFlight {
			return nil
		}
		if entered.Add(1) == publishInFlight {
			close(all)
		}
		select {
		case <-all:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("the first %d tasks were never in flight together: %w", publishInFlight, ctx.Err())
		}
	}}
	e.pub = gate
	c, _ := f.coordinator(t, e, run.ID)
	var logBuf testenv.LogBuffer
	c.log = slog.New(slog.NewTextHandler(&logBuf, nil))
	if done, err := c.step(ctx, false); err != nil || done {
		t.Fatalf("step: %v %v", done, err)
	}
	if lines := logBuf.Lines("publishing tasks failed"); len(lines) != 0 {
		t.Fatalf("publishing failed:\n%s", logBuf.String())
	}
	if most := gate.most.Load(); most != publishInFlight {
		t.Errorf("at most %d tasks in flight, want %d", most, publishInFlight)
	}
	if in := f.tasksInStream(t, run.ID, n); len(in) != n {
		t.Errorf("%d of %d tasks in the stream: %v", len(in), n, in)
	}
	if got := f.streamMsgs(t, bus.StreamTasks); got != n {
		t.Errorf("%d task messages, want %d", got, n)
	}
}

// A publish that fails stops the release's publishing: the tasks in flight
// end, no more start, and republishMissing later publishes every task that
// did not arrive, each once.
func TestCoordinatorFailedPublishLeavesTheRestForRepublish(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := newCoordFixture(t)
	e := f.executor(t, "ex-a", slog.New(slog.DiscardHandler))
	e.ackWait = 3 * time.Minute
	const n, through, failing = 100, 9, 10
	run := f.run(t, n, n)
	subjects := taskSubjects(run.ID, n)
	var broken atomic.Bool
	broken.Store(true)
	var afterFailure, acked atomic.Int64
	throughAcked := make(chan struct{})
	gate := &gatedPublisher{js: e.pub, decide: func(ctx context.Context, subject string) error {
		idx := subjects[subject]
		switch {
		case !broken.Load() || idx < through:
			return nil
		case idx == failing:
			// Once the first ones are acknowledged: those in flight when it
			// fails may or may not have reached the stream.
			select {
			case <-throughAcked:
			case <-ctx.Done():
				return ctx.Err()
			}
			return errors.New("stream unavailable")
		default:
			afterFailure.Add(1)
			return errBlock // in flight until the failure ends it
		}
	}, acked: func(subject string) {
		if subjects[subject] < through && acked.Add(1) == through {
			close(throughAcked)
		}
	}}
	e.pub = gate
	c, _ := f.coordinator(t, e, run.ID)
	var logBuf testenv.LogBuffer
	c.log = slog.New(slog.NewTextHandler(&logBuf, nil))
	if done, err := c.step(ctx, false); err != nil || done {
		t.Fatalf("step: %v %v", done, err)
	}
	if lines := logBuf.Lines("publishing tasks failed"); len(lines) != 1 || !strings.Contains(lines[0], fmt.Sprintf("unacknowledged=%d", n-through)) {
		t.Errorf("the failure was not reported with %d tasks unacknowledged:\n%s", n-through, logBuf.String())
	}
	if in := f.tasksInStream(t, run.ID, n); len(in) != through {
		t.Errorf("tasks in the stream after the failure: %v, want hosts 0 to %d", in, through-1)
	}
	if started := afterFailure.Load(); started > publishInFlight-1 {
		t.Errorf("%d publishes besides the failed one, want those in flight with it at most (%d): none starts after it",
			started, publishInFlight-1)
	}
	hs, err := f.st.RunHosts(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if h.State != testum.HostQueued || h.ReleasedAt == nil {
			t.Fatalf("host %d after the failed publish: %s released %v", h.Idx, h.State, h.ReleasedAt != nil)
		}
	}

	broken.Store(false)
	if err := c.republishMissing(ctx, true); err != nil {
		t.Fatal(err)
	}
	if in := f.tasksInStream(t, run.ID, n); len(in) != n {
		t.Errorf("%d of %d tasks in the stream after republishing: %v", len(in), n, in)
	}
	if got := f.streamMsgs(t, bus.StreamTasks); got != n {
		t.Errorf("%d task messages after republishing, want %d", got, n)
	}
}
