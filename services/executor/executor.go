// Package executor pulls host tasks from JetStream, runs each over SSH and
// streams its output back; it also hosts the run coordinators and the reaper
// of dead executors. Any number of executors may run side by side: PostgreSQL
// decides which of them starts a host.
package executor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/logstore"
	"github.com/testum/testum/libs/metrics"
	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// Defaults of Config; testum's settings table shows the same values.
const (
	DefaultSlots         = 256
	DefaultMaxHandshakes = 64
	DefaultOutputCap     = 64 << 20
	DefaultDrainTimeout  = 30 * time.Second
	DefaultConnIdle      = 60 * time.Second
)

// Config tunes an executor. Zero fields take defaults. The ack wait is not
// here: the executor reads it from the JetStream consumers it pulls from,
// so its in-progress acks always fit the consumers' clock.
type Config struct {
	ID                string        // unique per process; default hostname-pid-random
	Slots             int           // concurrent host sessions (default 256)
	MaxHandshakes     int           // ceiling of the adaptive window of SSH handshakes in flight (default 64): each costs the hosts' sshd real CPU
	ConnectTimeout    time.Duration // TCP dial + SSH handshake + auth (default 10s)
	KeepAlive         time.Duration // SSH keepalive interval during commands (default 15s)
	HostKeyPolicy     testum.HostKeyPolicy
	OutputCap         int64         // per-host output kept (default 64 MiB)
	SpoolDir          string        // where each host's output is spooled until archived
	HeartbeatInterval time.Duration // default 5s
	DeadAfter         time.Duration // an executor silent this long is dead (default 30s)
	ReapInterval      time.Duration // how often the reaper looks (default 5s)
	DrainTimeout      time.Duration // soft stop: how long running commands may finish (default 30s)
	ConnIdle          time.Duration // how long a finished command's connection waits for the next (default 60s)
	NoConnReuse       bool          // a new connection for every command
	TargetDeny        sshx.DenyList // address ranges never dialed (nil: sshx.DefaultDeny)
	Logger            *slog.Logger
}

// CheckAndSetDefaults validates c and fills zero fields.
func (c *Config) CheckAndSetDefaults() error {
	if c.ID == "" {
		host, _ := os.Hostname()
		var b [3]byte
		_, _ = rand.Read(b[:])
		c.ID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if c.Slots == 0 {
		c.Slots = DefaultSlots
	}
	if c.Slots < 1 {
		return fmt.Errorf("executor slots %d: want at least 1", c.Slots)
	}
	if c.MaxHandshakes == 0 {
		c.MaxHandshakes = DefaultMaxHandshakes
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = sshx.DefaultConnectTimeout
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = sshx.DefaultKeepAlive
	}
	if c.HostKeyPolicy == "" {
		c.HostKeyPolicy = testum.HostKeyAutoAdd
	}
	if !c.HostKeyPolicy.Valid() {
		return fmt.Errorf("host key policy %q: want auto_add or strict", c.HostKeyPolicy)
	}
	if c.OutputCap == 0 {
		c.OutputCap = DefaultOutputCap
	}
	if c.SpoolDir == "" {
		c.SpoolDir = os.TempDir()
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = store.DefaultExecutorHeartbeat
	}
	if c.DeadAfter == 0 {
		c.DeadAfter = 6 * c.HeartbeatInterval
	}
	if c.DeadAfter <= c.HeartbeatInterval {
		return fmt.Errorf("executor dead-after %s must exceed the heartbeat interval %s", c.DeadAfter, c.HeartbeatInterval)
	}
	if c.ReapInterval == 0 {
		c.ReapInterval = c.HeartbeatInterval
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.ConnIdle == 0 && !c.NoConnReuse {
		c.ConnIdle = DefaultConnIdle
	}
	if c.NoConnReuse || c.ConnIdle < 0 {
		c.ConnIdle = 0
	}
	if c.TargetDeny == nil {
		c.TargetDeny = sshx.DefaultDeny()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Deps are what an executor talks to.
type Deps struct {
	Store *store.Store
	NATS  *nats.Conn
	Logs  logstore.Store // archive of each host's full output
	// Metrics is the process's registry (nil: a registry of its own).
	Metrics *metrics.Metrics
}

// Executor runs host tasks and coordinates runs.
type Executor struct {
	cfg  Config
	st   *store.Store
	nc   *nats.Conn
	js   jetstream.JetStream
	logs logstore.Store
	log  *slog.Logger
	m    execMetrics
	pub  bus.Publisher // js, timed

	// ackWait is the consumers' AckWait, read from them by Run: in-progress
	// acks and the reaper's bounds follow it.
	ackWait time.Duration

	output outputPublisher // transcript messages: the output stream
	// lastSeq reads the last sequence on a host's output subject: a stream
	// lookup (a test counts them).
	lastSeq func(ctx context.Context, run uuid.UUID, idx int) int

	slots      chan struct{}  // a token per free session slot
	handshakes *handshakeGate // the adaptive bound of SSH handshakes in flight

	mu     sync.Mutex
	active map[uuid.UUID]map[*hostTask]struct{} // running tasks by run, for cancel and in-progress acks
	// coordinating holds the runs this executor coordinates or stands by
	// for, so that a second message of one is not a second coordinator.
	coordinating map[uuid.UUID]struct{}

	runs       *runCache
	secretEnvs *perRun[uuid.UUID, map[string]string] // each run's secret env
	holds      *runHolds                             // each run's platform rows and opened credentials
	claims     *claimer                              // host claims of tasks fetched together, in one statement
	runnings   *runner                               // hosts reached together marked running, in one statement
	finishes   *finisher                             // ends of hosts that finish together, in one statement
	pool       *connPool                             // connections kept for the next command on the same host
	signers    *signerCache                          // private keys parsed once per run

	chunk atomic.Int64 // the output stream's largest chunk (chunkLimit); 0 until read
}

// New builds an executor; Run starts it.
func New(cfg Config, deps Deps) (*Executor, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.NATS == nil || deps.Logs == nil {
		return nil, errors.New("executor: store, NATS and log store are required")
	}
	js, err := jetstream.New(deps.NATS)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := os.MkdirAll(cfg.SpoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("spool dir: %w", err)
	}
	m := newExecMetrics(deps.Metrics)
	pub := timedPublisher{js: js, h: m.PublishDuration}
	output, err := newJSOutput(deps.NATS, pub)
	if err != nil {
		return nil, err
	}
	e := &Executor{
		cfg: cfg, st: deps.Store, nc: deps.NATS, js: js, logs: deps.Logs, output: output, m: m, pub: pub,
		log:          cfg.Logger.With("component", "executor", "executor", cfg.ID),
		slots:        make(chan struct{}, cfg.Slots),
		active:       map[uuid.UUID]map[*hostTask]struct{}{},
		coordinating: map[uuid.UUID]struct{}{},
		runs:         newRunCache(1024),
		secretEnvs:   newPerRun[uuid.UUID, map[string]string](1024),
		pool:         newConnPool(cfg.ConnIdle, cfg.Slots),
		signers:      newSignerCache(),
	}
	e.holds = newRunHolds(deps.Store, e.signers)
	e.claims = newClaimer(deps.Store, cfg.ID, fetchMax)
	e.runnings = newRunner(deps.Store, cfg.ID, fetchMax)
	e.finishes = newFinisher(deps.Store, cfg.ID, fetchMax)
	e.handshakes = newHandshakeGate(cfg.MaxHandshakes, e.log, time.Now, m.handshakeGauges())
	for range cfg.Slots {
		e.slots <- struct{}{}
	}
	e.lastSeq = e.lastOutputSeq
	return e, nil
}

// ID is the executor's id.
func (e *Executor) ID() string { return e.cfg.ID }

// Run registers the executor and works until ctx ends. Then it stops taking
// work, lets running commands finish for up to DrainTimeout, ends what is
// left (its hosts end lost, so nothing runs twice unless the run retries),
// and returns.
func (e *Executor) Run(ctx context.Context) error {
	tasksCons, runsCons, err := e.consumers(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return err
	}
	host, _ := os.Hostname()
	if err := e.st.ExecutorRegister(ctx, e.cfg.ID, host, os.Getpid(), e.cfg.Slots); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return err
	}
	e.readChunkLimit(ctx)
	e.log.Info("executor started", "slots", e.cfg.Slots, "chunk", e.chunkLimit())
	defer e.m.online(e.cfg.Slots)()
	e.m.readPending(tasksCons)

	// work ends when ctx does; hard ends DrainTimeout later.
	hardCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()

	cancelSub, err := e.nc.Subscribe(bus.CancelAll, e.onCancel)
	if err != nil {
		return fmt.Errorf("subscribe cancel: %w", err)
	}
	defer cancelSub.Unsubscribe() //nolint:errcheck
	advSubs, err := e.subscribeAdvisories(hardCtx)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range advSubs {
			_ = s.Unsubscribe()
		}
	}()

	var tasks sync.WaitGroup // every host task and coordinator; they run on hardCtx
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return e.heartbeat(gctx, hardCtx) })
	g.Go(func() error { return e.pullTasks(gctx, hardCtx, tasksCons, &tasks) })
	g.Go(func() error { return e.pullRuns(gctx, hardCtx, runsCons, &tasks) })
	g.Go(func() error { return e.reap(gctx) })
	g.Go(func() error { e.sweepConns(gctx); return nil })
	g.Go(func() error { e.watchChunkLimit(gctx); return nil })
	defer e.pool.close()
	acksDone := make(chan struct{})
	go func() { defer close(acksDone); e.progressAcks(hardCtx) }()
	defer func() { hardStop(); <-acksDone }()
	err = g.Wait()

	// Soft stop: nothing new is pulled; let running commands finish.
	done := make(chan struct{})
	go func() { tasks.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(e.cfg.DrainTimeout):
		e.log.Warn("drain timeout: ending the sessions still running", "timeout", e.cfg.DrainTimeout)
		e.cancelAll(errShutdown)
		hardStop()
		<-done
	}
	e.holds.dropAll()
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := e.st.ExecutorStop(stopCtx, e.cfg.ID); serr != nil {
		e.log.Warn("recording executor stop", "err", serr)
	}
	e.log.Info("executor stopped")
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// sweepConns closes kept connections that waited too long, until ctx ends.
func (e *Executor) sweepConns(ctx context.Context) {
	if e.cfg.ConnIdle <= 0 {
		return
	}
	t := time.NewTicker(max(e.cfg.ConnIdle/4, 250*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			e.pool.sweep(now)
		}
	}
}

// heartbeat proves the executor alive, and keeps proving it while it drains
// after ctx ended, until hardCtx ends.
func (e *Executor) heartbeat(ctx, hardCtx context.Context) error {
	t := time.NewTicker(e.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(hardCtx, e.cfg.HeartbeatInterval)
		ok, err := e.st.ExecutorHeartbeat(hctx, e.cfg.ID)
		cancel()
		switch {
		case err != nil:
			e.log.Warn("heartbeat failed", "err", err)
		case !ok:
			// Declared stopped (or the row vanished): announce again.
			host, _ := os.Hostname()
			if err := e.st.ExecutorRegister(hardCtx, e.cfg.ID, host, os.Getpid(), e.cfg.Slots); err != nil {
				e.log.Warn("re-register failed", "err", err)
			}
		}
	}
}

// register adds a running task to the active set.
func (e *Executor) register(t *hostTask) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.active[t.run.ID]
	if m == nil {
		m = map[*hostTask]struct{}{}
		e.active[t.run.ID] = m
	}
	m[t] = struct{}{}
	e.m.slotUsed(1)
}

func (e *Executor) unregister(t *hostTask) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if m := e.active[t.run.ID]; m != nil {
		delete(m, t)
		e.m.slotUsed(-1)
		if len(m) == 0 {
			delete(e.active, t.run.ID)
		}
	}
}

// snapshot returns the active tasks.
func (e *Executor) snapshot() []*hostTask {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*hostTask
	for _, m := range e.active {
		for t := range m {
			out = append(out, t)
		}
	}
	return out
}

var (
	errCanceled = errors.New("canceled by request")
	errShutdown = errors.New("executor shut down before the command finished")
)

// onCancel ends every session this executor runs for the run.
func (e *Executor) onCancel(m *nats.Msg) {
	run, err := bus.DecodeCancel(m)
	if err != nil {
		return
	}
	e.cancelRun(run)
}

func (e *Executor) cancelRun(run uuid.UUID) {
	e.mu.Lock()
	var ts []*hostTask
	for t := range e.active[run] {
		ts = append(ts, t)
	}
	e.mu.Unlock()
	for _, t := range ts {
		t.cancel(errCanceled)
	}
}

func (e *Executor) cancelAll(cause error) {
	for _, t := range e.snapshot() {
		t.cancel(cause)
	}
}

// progressAcks keeps every held task from being redelivered while its
// command runs (in-progress acks at a third of the ack wait), and re-checks
// the cancel flag of their runs in case a cancel broadcast was missed.
func (e *Executor) progressAcks(hardCtx context.Context) {
	t := time.NewTicker(e.ackWait / 3)
	defer t.Stop()
	for {
		select {
		case <-hardCtx.Done():
			return
		case <-t.C:
		}
		canceled := map[uuid.UUID]bool{}
		for _, task := range e.snapshot() {
			if err := task.msg.InProgress(); err != nil {
				e.log.Debug("in-progress ack failed", "run", task.run.ID, "host", task.host.Name, "err", err)
			}
			id := task.run.ID
			if _, seen := canceled[id]; !seen {
				r, err := e.st.Run(hardCtx, id)
				canceled[id] = err == nil && (r.CancelRequested || r.State.Final())
			}
			if canceled[id] {
				task.cancel(errCanceled)
			}
		}
	}
}

// transcriptConfig is where this executor's transcripts publish and spool.
func (e *Executor) transcriptConfig() transcriptConfig {
	return transcriptConfig{pub: e.output, spoolDir: e.cfg.SpoolDir, log: e.log, m: e.m.Metrics, chunk: e.chunkLimit()}
}
