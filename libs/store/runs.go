package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/testum/testum/libs/db"
	"github.com/testum/testum/libs/testum"
)

// NewRun is a run to create with its resolved hosts.
type NewRun struct {
	ID            uuid.UUID
	Kind          string
	Command       string
	Spec          testum.RunSpec
	Targets       map[string]any
	CreatedBy     *int64
	CreatedByName string
	ParentRunID   *uuid.UUID
	Hosts         []NewRunHost
}

// NewRunHost is one resolved target.
type NewRunHost struct {
	PlatformID int64
	Name       string
	Address    string
}

// RunCreate inserts a run and all its hosts in tx.
func (tx *Tx) RunCreate(ctx context.Context, nr NewRun) (testum.Run, error) {
	spec, err := json.Marshal(nr.Spec)
	if err != nil {
		return testum.Run{}, err
	}
	if nr.Targets == nil {
		nr.Targets = map[string]any{}
	}
	targets, err := json.Marshal(nr.Targets)
	if err != nil {
		return testum.Run{}, err
	}
	kind := nr.Kind
	if kind == "" {
		kind = "command"
	}
	row, err := tx.q.RunCreate(ctx, db.RunCreateParams{
		ID: nr.ID, Kind: kind, Command: nr.Command, Spec: spec, Targets: targets,
		Parallelism: int32(nr.Spec.Parallelism), TimeoutSeconds: int32(nr.Spec.TimeoutSeconds),
		HostCount: int32(len(nr.Hosts)), CreatedBy: nr.CreatedBy, CreatedByName: nr.CreatedByName,
		ParentRunID: nr.ParentRunID,
	})
	if err != nil {
		return testum.Run{}, wrap(err, "run")
	}
	params := make([]db.RunHostsInsertParams, len(nr.Hosts))
	for i, h := range nr.Hosts {
		pid := h.PlatformID
		params[i] = db.RunHostsInsertParams{RunID: nr.ID, Idx: int32(i), PlatformID: &pid, Name: h.Name, Address: h.Address}
	}
	if _, err := tx.q.RunHostsInsert(ctx, params); err != nil {
		return testum.Run{}, wrap(err, "run hosts")
	}
	if err := tx.runSecretEnvCreate(ctx, nr.ID, nr.Spec.SecretEnv); err != nil {
		return testum.Run{}, err
	}
	run, err := runFromRow(row)
	run.Spec.SecretEnv = nr.Spec.SecretEnv
	return run, err
}

// runSecretEnvAD binds a run's sealed environment to its row.
func runSecretEnvAD(id uuid.UUID) []byte { return []byte("run_secret_env/" + id.String() + "/env") }

// runSecretEnvCreate seals a run's secret env values apart from its spec.
func (tx *Tx) runSecretEnvCreate(ctx context.Context, id uuid.UUID, env map[string]string) error {
	if len(env) == 0 {
		return nil
	}
	if tx.s.sealer == nil {
		return fmt.Errorf("run secret env: no encryption key configured")
	}
	plain, err := json.Marshal(env)
	if err != nil {
		return err
	}
	sealed, err := tx.s.sealer.Seal(plain, runSecretEnvAD(id))
	if err != nil {
		return fmt.Errorf("seal run secret env: %w", err)
	}
	err = tx.q.RunSecretEnvCreate(ctx, db.RunSecretEnvCreateParams{RunID: id, Env: sealed, KeyID: tx.s.sealer.CurrentKeyID()})
	return wrap(err, "run secret env")
}

// RunSecretEnv returns the decrypted secret env values of a run (empty when
// it has none), for the executor and for a rerun only.
func (s *Store) RunSecretEnv(ctx context.Context, id uuid.UUID) (map[string]string, error) {
	sealed, err := s.q.RunSecretEnvGet(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, wrap(err, "run secret env")
	}
	if s.sealer == nil {
		return nil, fmt.Errorf("run secret env: no encryption key configured")
	}
	plain, err := s.sealer.Open(sealed, runSecretEnvAD(id))
	if err != nil {
		return nil, fmt.Errorf("run %s secret env: %w", id, err)
	}
	env := map[string]string{}
	if err := json.Unmarshal(plain, &env); err != nil {
		return nil, fmt.Errorf("run %s secret env: %w", id, err)
	}
	return env, nil
}

// Run returns one run.
func (s *Store) Run(ctx context.Context, id uuid.UUID) (testum.Run, error) {
	row, err := s.q.RunGet(ctx, id)
	if err != nil {
		return testum.Run{}, wrap(err, "run "+id.String())
	}
	return runFromRow(row)
}

// RunHosts returns the hosts of a run in order.
func (s *Store) RunHosts(ctx context.Context, run uuid.UUID) ([]testum.RunHost, error) {
	rows, err := s.q.RunHostsList(ctx, run)
	if err != nil {
		return nil, wrap(err, "run hosts")
	}
	out := make([]testum.RunHost, len(rows))
	for i, r := range rows {
		out[i] = runHostFromRow(r)
	}
	return out, nil
}

// RunHost returns one host of a run.
func (s *Store) RunHost(ctx context.Context, run uuid.UUID, idx int) (testum.RunHost, error) {
	r, err := s.q.RunHostGet(ctx, db.RunHostGetParams{RunID: run, Idx: int32(idx)})
	if err != nil {
		return testum.RunHost{}, wrap(err, fmt.Sprintf("host %d of run %s", idx, run))
	}
	return runHostFromRow(r), nil
}

// RunHostCounts returns how many hosts of a run are in each state.
func (s *Store) RunHostCounts(ctx context.Context, run uuid.UUID) (map[testum.HostState]int, error) {
	rows, err := s.q.RunHostCounts(ctx, run)
	if err != nil {
		return nil, wrap(err, "run host counts")
	}
	out := make(map[testum.HostState]int, len(rows))
	for _, r := range rows {
		out[testum.HostState(r.State)] = int(r.N)
	}
	return out, nil
}

// RunHostCountsMany returns the host counts per state of each given run.
func (s *Store) RunHostCountsMany(ctx context.Context, runs []uuid.UUID) (map[uuid.UUID]map[testum.HostState]int, error) {
	rows, err := s.q.RunHostCountsMany(ctx, runs)
	if err != nil {
		return nil, wrap(err, "run host counts")
	}
	out := make(map[uuid.UUID]map[testum.HostState]int, len(runs))
	for _, r := range rows {
		if out[r.RunID] == nil {
			out[r.RunID] = map[testum.HostState]int{}
		}
		out[r.RunID][testum.HostState(r.State)] = int(r.N)
	}
	return out, nil
}

// RunCoordinate makes executor the coordinator of a run, unless another
// live executor is. It returns ok=false when the run is finished or held.
func (s *Store) RunCoordinate(ctx context.Context, run uuid.UUID, executor string, aliveAfter time.Time) (testum.Run, bool, error) {
	row, err := s.q.RunCoordinate(ctx, db.RunCoordinateParams{ID: run, ExecutorID: executor, AliveAfter: aliveAfter})
	if errors.Is(err, pgx.ErrNoRows) {
		return testum.Run{}, false, nil
	}
	if err != nil {
		return testum.Run{}, false, wrap(err, "run "+run.String())
	}
	r, err := runFromRow(row)
	return r, err == nil, err
}

// Progress is the coordinator's view of a run.
type Progress struct {
	Total, Pending, InFlight, Failures, Finished, OK int
}

// RunProgress counts a run's hosts for the coordinator.
func (s *Store) RunProgress(ctx context.Context, run uuid.UUID) (Progress, error) {
	r, err := s.q.RunProgress(ctx, run)
	if err != nil {
		return Progress{}, wrap(err, "run progress")
	}
	return Progress{Total: int(r.Total), Pending: int(r.Pending), InFlight: int(r.InFlight),
		Failures: int(r.Failures), Finished: int(r.Finished), OK: int(r.Ok)}, nil
}

// Released is a host whose task the coordinator publishes.
type Released struct {
	Idx     int
	Attempt int // starts so far; the task authorizes Attempt+1
}

// RunHostsRelease marks up to n waiting hosts released and returns them.
func (s *Store) RunHostsRelease(ctx context.Context, run uuid.UUID, n int) ([]Released, error) {
	if n <= 0 {
		return nil, nil
	}
	var out []Released
	err := s.InTx(ctx, func(tx *Tx) error {
		idxs, err := tx.q.RunHostsNextToRelease(ctx, db.RunHostsNextToReleaseParams{RunID: run, Lim: int32(n)})
		if err != nil || len(idxs) == 0 {
			return err
		}
		rows, err := tx.q.RunHostsRelease(ctx, db.RunHostsReleaseParams{RunID: run, Idxs: idxs})
		if err != nil {
			return err
		}
		for _, r := range rows {
			out = append(out, Released{Idx: int(r.Idx), Attempt: int(r.Attempt)})
		}
		return nil
	})
	return out, wrap(err, "release hosts")
}

// RunHostsReleasedWaiting returns released hosts not claimed since before.
func (s *Store) RunHostsReleasedWaiting(ctx context.Context, run uuid.UUID, before time.Time) ([]Released, error) {
	rows, err := s.q.RunHostsReleasedWaiting(ctx, db.RunHostsReleasedWaitingParams{RunID: run, Before: &before})
	if err != nil {
		return nil, wrap(err, "released hosts")
	}
	out := make([]Released, len(rows))
	for i, r := range rows {
		out[i] = Released{Idx: int(r.Idx), Attempt: int(r.Attempt)}
	}
	return out, nil
}

// RunHostClaim is the one door through which a host starts: it moves a
// queued host to connecting for this attempt and executor, atomically.
// ok=false means someone else started it or it is no longer queued.
func (s *Store) RunHostClaim(ctx context.Context, run uuid.UUID, idx, attempt int, executor string) (testum.RunHost, bool, error) {
	row, err := s.q.RunHostClaim(ctx, db.RunHostClaimParams{RunID: run, Idx: int32(idx), Attempt: int32(attempt), ExecutorID: executor})
	if errors.Is(err, pgx.ErrNoRows) {
		return testum.RunHost{}, false, nil
	}
	if err != nil {
		return testum.RunHost{}, false, wrap(err, "claim host")
	}
	return runHostFromRow(row), true, nil
}

// RunHostSetRunning moves a claimed host to running. ok=false means the
// host is no longer this executor's (the reaper declared it lost).
func (s *Store) RunHostSetRunning(ctx context.Context, run uuid.UUID, idx, attempt int, executor string, platform int64) (bool, error) {
	n, err := s.q.RunHostSetRunning(ctx, db.RunHostSetRunningParams{RunID: run, Idx: int32(idx), Attempt: int32(attempt), ExecutorID: executor, PlatformID: platform})
	return n == 1, wrap(err, "host running")
}

// HostResult is how a host ended.
type HostResult struct {
	State        testum.HostState
	ExitCode     *int
	Signal       string
	Error        string
	OutputBytes  int64
	Truncated    bool
	OutputDigest string
	LogKey       string
}

// RunHostFinish records a host's end. ok=false means the host was no longer
// this executor's to finish.
func (s *Store) RunHostFinish(ctx context.Context, run uuid.UUID, idx, attempt int, executor string, r HostResult) (testum.RunHost, bool, error) {
	var ec *int32
	if r.ExitCode != nil {
		v := int32(*r.ExitCode)
		ec = &v
	}
	row, err := s.q.RunHostFinish(ctx, db.RunHostFinishParams{
		RunID: run, Idx: int32(idx), Attempt: int32(attempt), ExecutorID: executor,
		State: string(r.State), ExitCode: ec, Signal: r.Signal, Error: r.Error,
		OutputBytes: r.OutputBytes, Truncated: r.Truncated, OutputDigest: r.OutputDigest, LogKey: r.LogKey,
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return testum.RunHost{}, false, nil
	}
	if err != nil {
		return testum.RunHost{}, false, wrap(err, "finish host")
	}
	return runHostFromRow(row), true, nil
}

// EndedHost names a host moved to a final state in bulk.
type EndedHost struct {
	Idx  int
	Name string
}

// RunHostsEndQueued moves every still-queued host of a run to state.
func (s *Store) RunHostsEndQueued(ctx context.Context, run uuid.UUID, state testum.HostState) ([]EndedHost, error) {
	rows, err := s.q.RunHostsEndQueued(ctx, db.RunHostsEndQueuedParams{RunID: run, State: string(state)})
	if err != nil {
		return nil, wrap(err, "end queued hosts")
	}
	out := make([]EndedHost, len(rows))
	for i, r := range rows {
		out[i] = EndedHost{Idx: int(r.Idx), Name: r.Name}
	}
	return out, nil
}

// RunFinish moves an unfinished run to a final state. ok=false when it was
// already final.
func (s *Store) RunFinish(ctx context.Context, run uuid.UUID, state testum.RunState, msg string) (testum.Run, bool, error) {
	row, err := s.q.RunFinish(ctx, db.RunFinishParams{ID: run, State: string(state), Error: msg})
	if errors.Is(err, pgx.ErrNoRows) {
		return testum.Run{}, false, nil
	}
	if err != nil {
		return testum.Run{}, false, wrap(err, "finish run")
	}
	r, err := runFromRow(row)
	return r, err == nil, err
}

// RunRequestCancel flags a run canceled-on-request.
func (tx *Tx) RunRequestCancel(ctx context.Context, run uuid.UUID) (testum.Run, error) {
	row, err := tx.q.RunRequestCancel(ctx, run)
	if err != nil {
		return testum.Run{}, wrap(err, "run "+run.String())
	}
	return runFromRow(row)
}

// RunSecretEnvRotate re-encrypts, with the newest key, every run's secret
// env sealed with another key, like CredentialsRotate does for credentials.
func (tx *Tx) RunSecretEnvRotate(ctx context.Context, needs func(ct []byte) bool) (Rotation, error) {
	var r Rotation
	rows, err := tx.q.RunSecretEnvAll(ctx)
	if err != nil {
		return r, wrap(err, "run secret env")
	}
	for _, row := range rows {
		r.Checked++
		if !needs(row.Env) {
			continue
		}
		plain, err := tx.s.sealer.Open(row.Env, runSecretEnvAD(row.RunID))
		if err != nil {
			return r, fmt.Errorf("run %s secret env: %w", row.RunID, err)
		}
		sealed, err := tx.s.sealer.Seal(plain, runSecretEnvAD(row.RunID))
		if err != nil {
			return r, err
		}
		if err := tx.q.RunSecretEnvReseal(ctx, db.RunSecretEnvResealParams{RunID: row.RunID, Env: sealed,
			KeyID: tx.s.sealer.CurrentKeyID()}); err != nil {
			return r, wrap(err, "run secret env")
		}
		r.Resealed++
	}
	return r, nil
}

// RunsOrphaned returns unfinished runs that no live executor coordinates.
func (s *Store) RunsOrphaned(ctx context.Context, createdBefore, aliveAfter time.Time) ([]uuid.UUID, error) {
	ids, err := s.q.RunsActiveOrphaned(ctx, db.RunsActiveOrphanedParams{CreatedBefore: createdBefore, AliveAfter: aliveAfter})
	return ids, wrap(err, "orphaned runs")
}

func runFromRow(r db.Run) (testum.Run, error) {
	run := testum.Run{
		ID: r.ID, State: testum.RunState(r.State), Kind: r.Kind, Command: r.Command,
		Parallelism: int(r.Parallelism), TimeoutSeconds: int(r.TimeoutSeconds), HostCount: int(r.HostCount),
		CreatedBy: r.CreatedBy, CreatedByName: r.CreatedByName, ParentRunID: r.ParentRunID,
		CoordinatorID: deref(r.CoordinatorID), CancelRequested: r.CancelRequested, AbortReason: r.AbortReason, Error: r.Error,
		CreatedAt: r.CreatedAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt,
	}
	if err := json.Unmarshal(r.Spec, &run.Spec); err != nil {
		return run, fmt.Errorf("run %s spec: %w", r.ID, err)
	}
	if err := json.Unmarshal(r.Targets, &run.Targets); err != nil {
		return run, fmt.Errorf("run %s targets: %w", r.ID, err)
	}
	return run, nil
}

func runHostFromRow(r db.RunHost) testum.RunHost {
	h := testum.RunHost{
		RunID: r.RunID, Idx: int(r.Idx), PlatformID: r.PlatformID, Name: r.Name, Address: r.Address,
		State: testum.HostState(r.State), Attempt: int(r.Attempt), ExecutorID: deref(r.ExecutorID),
		Signal: r.Signal, Error: r.Error, OutputBytes: r.OutputBytes, Truncated: r.Truncated,
		OutputDigest: r.OutputDigest, LogKey: r.LogKey, ReleasedAt: r.ReleasedAt,
		StartedAt: r.StartedAt, FinishedAt: r.FinishedAt,
	}
	if r.ExitCode != nil {
		v := int(*r.ExitCode)
		h.ExitCode = &v
	}
	return h
}

// RunAbort records why no further host of a run may start.
func (s *Store) RunAbort(ctx context.Context, run uuid.UUID, reason string) error {
	return wrap(s.q.RunAbort(ctx, db.RunAbortParams{ID: run, Reason: reason}), "abort run")
}

// RunCoordinatorRelease gives up coordinating a run (soft stop).
func (s *Store) RunCoordinatorRelease(ctx context.Context, run uuid.UUID, executor string) error {
	return wrap(s.q.RunCoordinatorRelease(ctx, db.RunCoordinatorReleaseParams{ID: run, ExecutorID: executor}), "release run")
}

// RunHostEndUnstarted ends a host that never started. ok=false when it was
// not queued any more.
func (s *Store) RunHostEndUnstarted(ctx context.Context, run uuid.UUID, idx int, state testum.HostState, msg string) (bool, error) {
	n, err := s.q.RunHostEndUnstarted(ctx, db.RunHostEndUnstartedParams{RunID: run, Idx: int32(idx), State: string(state), Error: msg})
	return n == 1, wrap(err, "end host")
}

// RunFilter selects runs for the history.
type RunFilter struct {
	State, User, Query string
	Since, Until       *time.Time
	PlatformID         *int64
	Labels             map[string]string
}

// RunSearch pages through the history, newest first.
func (s *Store) RunSearch(ctx context.Context, f RunFilter, limit, offset int) ([]testum.Run, int, error) {
	sel, err := json.Marshal(nonNilLabels(f.Labels))
	if err != nil {
		return nil, 0, err
	}
	rows, err := s.q.RunSearch(ctx, db.RunSearchParams{State: f.State, UserName: f.User, Q: f.Query, Since: f.Since,
		Until: f.Until, PlatformID: f.PlatformID, Selector: sel, Lim: int32(limit), Off: int32(offset)})
	if err != nil {
		return nil, 0, wrap(err, "runs")
	}
	n, err := s.q.RunSearchCount(ctx, db.RunSearchCountParams{State: f.State, UserName: f.User, Q: f.Query, Since: f.Since,
		Until: f.Until, PlatformID: f.PlatformID, Selector: sel})
	if err != nil {
		return nil, 0, wrap(err, "runs")
	}
	out := make([]testum.Run, 0, len(rows))
	for _, r := range rows {
		run, err := runFromRow(r)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, run)
	}
	return out, int(n), nil
}

// Run returns a run inside tx.
func (tx *Tx) Run(ctx context.Context, id uuid.UUID) (testum.Run, error) {
	row, err := tx.q.RunGet(ctx, id)
	if err != nil {
		return testum.Run{}, wrap(err, "run "+id.String())
	}
	return runFromRow(row)
}
