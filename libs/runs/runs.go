// Package runs creates runs: it validates what a run executes and how,
// resolves its targets to platforms, stores the run with its hosts and its
// audit entry, and hands it to a coordinator; it cancels and re-runs them.
// It knows nothing of HTTP: the gateway decodes requests into its types.
package runs

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// Store is what the service reads outside a transaction, and the way in.
type Store interface {
	Run(ctx context.Context, id uuid.UUID) (testum.Run, error)
	RunHosts(ctx context.Context, run uuid.UUID) ([]testum.RunHost, error)
	RunSecretEnv(ctx context.Context, id uuid.UUID) (map[string]string, error)
	InTx(ctx context.Context, fn func(tx Tx) error) error
}

// Tx is what the service does inside a transaction.
type Tx interface {
	PlatformsByIDs(ctx context.Context, ids []int64) ([]testum.Platform, error)
	PlatformsMatching(ctx context.Context, selector map[string]string, limit int) ([]testum.Platform, error)
	PlatformNames(ctx context.Context) (map[string]int64, []string, error)
	RunCreate(ctx context.Context, nr store.NewRun) (testum.Run, error)
	Run(ctx context.Context, id uuid.UUID) (testum.Run, error)
	RunRequestCancel(ctx context.Context, run uuid.UUID) (testum.Run, error)
	Audit(ctx context.Context, e testum.AuditEntry) error
}

// Publisher tells the executors about a run.
type Publisher interface {
	// RunAccepted hands a stored run to a coordinator.
	RunAccepted(ctx context.Context, run uuid.UUID) error
	// RunCancel tells every executor to end the run's sessions.
	RunCancel(ctx context.Context, run uuid.UUID) error
	// RunWake makes the run's coordinator look at it again now.
	RunWake(ctx context.Context, run uuid.UUID) error
}

// Postgres adapts the store to Store.
func Postgres(st *store.Store) Store { return pgStore{st} }

type pgStore struct{ *store.Store }

func (s pgStore) InTx(ctx context.Context, fn func(tx Tx) error) error {
	return s.Store.InTx(ctx, func(tx *store.Tx) error { return fn(tx) })
}

// Config tunes the service. Zero fields take defaults.
type Config struct {
	DefaultTimeout  int // per-host command timeout when a run gives none, seconds (default 600)
	MaxTimeout      int // largest per-host timeout or run deadline accepted, seconds (default 7 days)
	DefaultParallel int // hosts in flight when a run gives no parallelism (default 256)
	Logger          *slog.Logger
}

// CheckAndSetDefaults fills zero fields.
func (c *Config) CheckAndSetDefaults() error {
	if c.DefaultTimeout == 0 {
		c.DefaultTimeout = 600
	}
	if c.MaxTimeout == 0 {
		c.MaxTimeout = 7 * 24 * 3600
	}
	if c.DefaultParallel == 0 {
		c.DefaultParallel = 256
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Service creates, cancels and re-runs runs.
type Service struct {
	cfg Config
	st  Store
	pub Publisher
	log *slog.Logger
}

// New builds the service.
func New(cfg Config, st Store, pub Publisher) (*Service, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, st: st, pub: pub, log: cfg.Logger}, nil
}

// publishWait bounds a publish after the run is stored: past it, the
// reaper publishes the run again.
const publishWait = 5 * time.Second

// Create validates a run request, resolves its targets and stores the run
// with its hosts and the audit entry in one transaction; then it publishes
// the run for a coordinator. A run whose publish fails is still accepted:
// it is in PostgreSQL, and the reaper publishes it again.
func (s *Service) Create(ctx context.Context, by auth.Actor, req Request) (testum.Run, error) {
	return s.create(ctx, by, req, nil)
}

func (s *Service) create(ctx context.Context, by auth.Actor, req Request, parent *uuid.UUID) (testum.Run, error) {
	spec, err := s.Spec(req)
	if err != nil {
		return testum.Run{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return testum.Run{}, err
	}
	nr := store.NewRun{ID: id, Kind: "command", Command: spec.Command, Spec: spec, ParentRunID: parent,
		Targets: targetsMap(req.Targets)}
	if spec.Script != nil {
		nr.Kind = "script"
		nr.Command = scriptTitle(spec.Script)
	}
	if by.UserID != 0 {
		uid := by.UserID
		nr.CreatedBy, nr.CreatedByName = &uid, by.Username
	}
	// Targets are resolved before the transaction that stores the run: a
	// costly expression then holds no transaction open.
	hosts, err := s.resolve(ctx, req.Targets)
	if err != nil {
		return testum.Run{}, err
	}
	nr.Hosts = hosts
	var run testum.Run
	err = s.st.InTx(ctx, func(tx Tx) error {
		var err error
		if run, err = tx.RunCreate(ctx, nr); err != nil {
			return err
		}
		return tx.Audit(ctx, by.Entry("run.create", "run:"+id.String(), map[string]any{
			"kind": nr.Kind, "command": nr.Command, "hosts": len(hosts), "targets": nr.Targets,
		}))
	})
	if err != nil {
		return testum.Run{}, err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishWait)
	defer cancel()
	if err := s.pub.RunAccepted(pctx, id); err != nil {
		s.log.Warn("run stored but not published yet; the reaper will publish it", "run", id, "err", err)
	}
	return run, nil
}

// Preview resolves targets without running anything: the names of the
// hosts a run would take, in its order.
func (s *Service) Preview(ctx context.Context, t Targets) ([]string, error) {
	hosts, err := s.resolve(ctx, t)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h.Name
	}
	return names, nil
}

// Cancel asks every executor to end the run's sessions (and the remote
// processes with them); the coordinator marks the hosts not started
// canceled. Canceling again, or a finished run, changes nothing. An actor
// may cancel its own runs; others' need auth.ActionRunCancelAny.
func (s *Service) Cancel(ctx context.Context, by auth.Actor, id uuid.UUID) (testum.Run, error) {
	var run testum.Run
	err := s.st.InTx(ctx, func(tx Tx) error {
		r, err := tx.Run(ctx, id)
		if err != nil {
			return err
		}
		if r.CreatedBy == nil || *r.CreatedBy != by.UserID {
			if !auth.Allowed(by.Role, auth.ActionRunCancelAny) {
				return testum.Errorf(testum.CodeForbidden, "role %s may cancel only its own runs", by.Role)
			}
		}
		if r.State.Final() || r.CancelRequested {
			run = r
			return nil
		}
		if run, err = tx.RunRequestCancel(ctx, id); err != nil {
			return err
		}
		return tx.Audit(ctx, by.Entry("run.cancel", "run:"+id.String(), nil))
	})
	if err != nil {
		return testum.Run{}, err
	}
	if !run.State.Final() {
		if err := s.pub.RunCancel(ctx, id); err != nil {
			s.log.Warn("cancel not broadcast; executors see the flag at their next check", "run", id, "err", err)
		}
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishWait)
		defer cancel()
		// Wake the coordinator so the hosts not started end now.
		_ = s.pub.RunWake(pctx, id)
	}
	return run, nil
}

// Which hosts of a run Rerun takes.
const (
	RerunFailed = "failed" // those that did not end ok (the default)
	RerunAll    = "all"
)

// Rerun runs run id again with the same spec, on all its hosts or only on
// the ones that did not end ok (only is RerunFailed, RerunAll or "").
func (s *Service) Rerun(ctx context.Context, by auth.Actor, id uuid.UUID, only string) (testum.Run, error) {
	if only == "" {
		only = RerunFailed
	}
	if only != RerunFailed && only != RerunAll {
		return testum.Run{}, testum.Invalid("only %q: want failed or all", only)
	}
	old, err := s.st.Run(ctx, id)
	if err != nil {
		return testum.Run{}, err
	}
	hosts, err := s.st.RunHosts(ctx, id)
	if err != nil {
		return testum.Run{}, err
	}
	var ids []int64
	for _, h := range hosts {
		if h.PlatformID == nil || (only == RerunFailed && h.State == testum.HostOK) {
			continue
		}
		ids = append(ids, *h.PlatformID)
	}
	if len(ids) == 0 {
		return testum.Run{}, testum.Invalid("nothing to re-run: no host of run %s matches only=%s", id, only)
	}
	env, err := s.rerunEnv(ctx, id, old.Spec)
	if err != nil {
		return testum.Run{}, err
	}
	return s.create(ctx, by, requestOf(old.Spec, Targets{PlatformIDs: ids}, env), &id)
}

// requestOf is the request that makes a run of spec again on targets.
func requestOf(spec testum.RunSpec, t Targets, env map[string]EnvValue) Request {
	req := Request{Command: spec.Command, Targets: t, Env: env, Dir: spec.Dir, Sudo: spec.Sudo, RetryLost: spec.RetryLost}
	if spec.Script != nil {
		req.Command = ""
		sc := *spec.Script
		req.Script = &sc
	}
	timeout, par := spec.TimeoutSeconds, spec.Parallelism
	req.Timeout, req.Parallelism = &timeout, &par
	if spec.Batch != "" {
		b := spec.Batch
		req.Batch = &b
	}
	if spec.MaxFailures != "" {
		m := spec.MaxFailures
		req.MaxFailures = &m
	}
	if spec.DeadlineSecs > 0 {
		d := spec.DeadlineSecs
		req.Deadline = &d
	}
	return req
}

// rerunEnv is the env of a run to send again: the plain values and the
// secret ones, opened from the store and marked secret again.
func (s *Service) rerunEnv(ctx context.Context, id uuid.UUID, spec testum.RunSpec) (map[string]EnvValue, error) {
	out := make(map[string]EnvValue, len(spec.Env)+len(spec.SecretEnvNames))
	for k, v := range spec.Env {
		out[k] = EnvValue{Value: v}
	}
	if len(spec.SecretEnvNames) > 0 {
		secret, err := s.st.RunSecretEnv(ctx, id)
		if err != nil {
			return nil, err
		}
		for k, v := range secret {
			out[k] = EnvValue{Value: v, Secret: true}
		}
	}
	return out, nil
}
