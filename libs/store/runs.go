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

// RunCreate inserts a run, all its hosts and its sealed secret env, together.
func (s *Store) RunCreate(ctx context.Context, nr NewRun) (testum.Run, error) {
	var out testum.Run
	err := s.atomically(ctx, func(tx *Store) error {
		var err error
		out, err = tx.runCreate(ctx, nr)
		return err
	})
	return out, err
}

func (s *Store) runCreate(ctx context.Context, nr NewRun) (testum.Run, error) {
	spec, err := encodeRunSpec(nr.Spec)
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
	row, err := s.q.RunCreate(ctx, db.RunCreateParams{
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
	if _, err := s.q.RunHostsInsert(ctx, params); err != nil {
		return testum.Run{}, wrap(err, "run hosts")
	}
	if err := s.runSecretEnvCreate(ctx, nr.ID, nr.Spec.SecretEnv); err != nil {
		return testum.Run{}, err
	}
	run, err := runFromRow(row)
	run.Spec.SecretEnv = nr.Spec.SecretEnv
	return run, err
}

// Run returns one run.
func (s *Store) Run(ctx context.Context, id uuid.UUID) (testum.Run, error) {
	row, err := s.q.RunGet(ctx, id)
	if err != nil {
		return testum.Run{}, wrap(err, "run "+id.String())
	}
	return runFromRow(row)
}

// RunCoordinate makes executor the coordinator of a run, unless another
// live executor is: one that heartbeat within the last deadAfter, by the
// database clock (silence counting only while the server was up, see
// ExecutorsDeadHolding). It returns ok=false when the run is finished or held.
func (s *Store) RunCoordinate(ctx context.Context, run uuid.UUID, executor string, deadAfter time.Duration) (testum.Run, bool, error) {
	row, err := s.q.RunCoordinate(ctx, db.RunCoordinateParams{ID: run, ExecutorID: executor, DeadAfter: interval(deadAfter),
		HeardSince: s.heardFrom()})
	if errors.Is(err, pgx.ErrNoRows) {
		return testum.Run{}, false, nil
	}
	if err != nil {
		return testum.Run{}, false, wrap(err, "run "+run.String())
	}
	r, err := runFromRow(row)
	return r, err == nil, err
}

// ErrNotCoordinator refuses a coordinator's write for a run that another
// executor has taken over since (its liveness expired, e.g. while paused):
// the caller stops coordinating the run.
var ErrNotCoordinator = &testum.Error{Code: testum.CodeConflict, Message: "the run is coordinated by another executor"}

// coordinatorCheck tells why a coordinator's write changed nothing:
// ErrNotCoordinator when executor no longer coordinates the run, nil when
// there was simply nothing to change.
func (s *Store) coordinatorCheck(ctx context.Context, run uuid.UUID, executor string) error {
	r, err := s.q.RunGet(ctx, run)
	if err != nil {
		return wrap(err, "run "+run.String())
	}
	if deref(r.CoordinatorID) != executor {
		return ErrNotCoordinator
	}
	return nil
}

// RunFinish moves an unfinished run to a final state, if executor
// coordinates it (ErrNotCoordinator otherwise). ok=false when it was
// already final.
func (s *Store) RunFinish(ctx context.Context, run uuid.UUID, executor string, state testum.RunState, msg string) (testum.Run, bool, error) {
	row, err := s.q.RunFinish(ctx, db.RunFinishParams{ID: run, ExecutorID: executor, State: string(state), Error: msg})
	if errors.Is(err, pgx.ErrNoRows) {
		return testum.Run{}, false, s.coordinatorCheck(ctx, run, executor)
	}
	if err != nil {
		return testum.Run{}, false, wrap(err, "finish run")
	}
	r, err := runFromRow(row)
	return r, err == nil, err
}

// RunRequestCancel flags a run canceled-on-request.
func (s *Store) RunRequestCancel(ctx context.Context, run uuid.UUID) (testum.Run, error) {
	row, err := s.q.RunRequestCancel(ctx, run)
	if err != nil {
		return testum.Run{}, wrap(err, "run "+run.String())
	}
	return runFromRow(row)
}

// RunAbort records why no further host of a run may start, if executor
// coordinates it (ErrNotCoordinator otherwise); a reason recorded already
// stays.
func (s *Store) RunAbort(ctx context.Context, run uuid.UUID, executor, reason string) error {
	n, err := s.q.RunAbort(ctx, db.RunAbortParams{ID: run, ExecutorID: executor, Reason: reason})
	if err != nil {
		return wrap(err, "abort run")
	}
	if n == 0 {
		return s.coordinatorCheck(ctx, run, executor)
	}
	return nil
}

// RunCoordinatorRelease gives up coordinating a run (soft stop).
func (s *Store) RunCoordinatorRelease(ctx context.Context, run uuid.UUID, executor string) error {
	return wrap(s.q.RunCoordinatorRelease(ctx, db.RunCoordinatorReleaseParams{ID: run, ExecutorID: executor}), "release run")
}

// OrphanedRun is an unfinished run that no live executor coordinates.
// Settled means it has been so for longer than the settle time asked for.
type OrphanedRun struct {
	ID      uuid.UUID
	Settled bool
}

// RunsOrphaned returns unfinished runs that no live executor (one that
// heartbeat within deadAfter) coordinates, oldest first; a run is settled
// once it has had no live coordinator for longer than settle (since its
// creation when it never had one, else since its coordinator's liveness
// expired). Both are measured by the database clock.
func (s *Store) RunsOrphaned(ctx context.Context, deadAfter, settle time.Duration) ([]OrphanedRun, error) {
	rows, err := s.q.RunsActiveOrphaned(ctx, db.RunsActiveOrphanedParams{DeadAfter: interval(deadAfter), Settle: interval(settle),
		HeardSince: s.heardFrom()})
	if err != nil {
		return nil, wrap(err, "orphaned runs")
	}
	out := make([]OrphanedRun, len(rows))
	for i, r := range rows {
		out[i] = OrphanedRun{ID: r.ID, Settled: r.Settled}
	}
	return out, nil
}

// RunFilter selects runs for the history.
type RunFilter struct {
	State, User, Query string
	Since, Until       *time.Time
	PlatformID         *int64
	Labels             map[string]string
	BeforeID           *uuid.UUID // the page starts after this run (keyset paging)
}

// RunSearch pages through the history, newest first, and counts the runs
// that match.
func (s *Store) RunSearch(ctx context.Context, f RunFilter, limit, offset int) ([]testum.Run, int, error) {
	sel, err := json.Marshal(nonNilLabels(f.Labels))
	if err != nil {
		return nil, 0, err
	}
	page := func(before *uuid.UUID) func(limit, offset int) ([]db.RunSearchRow, error) {
		return func(limit, offset int) ([]db.RunSearchRow, error) {
			return s.q.RunSearch(ctx, db.RunSearchParams{State: f.State, UserName: f.User, Q: f.Query, Since: f.Since,
				Until: f.Until, PlatformID: f.PlatformID, Selector: sel, BeforeID: before, Lim: int32(limit), Off: int32(offset)})
		}
	}
	totalOf := func(r db.RunSearchRow) int64 { return r.Total }
	rows, total, err := paged(page(f.BeforeID), limit, offset, totalOf)
	if err == nil && len(rows) == 0 && f.BeforeID != nil {
		// Past the end of a keyset walk: the total is still the filter's.
		_, total, err = paged(page(nil), 1, 0, totalOf)
	}
	if err != nil {
		return nil, 0, wrap(err, "runs")
	}
	out := make([]testum.Run, 0, len(rows))
	for _, r := range rows {
		run, err := runFromRow(r.Run)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, run)
	}
	return out, int(total), nil
}

func runFromRow(r db.Run) (testum.Run, error) {
	run := testum.Run{
		ID: r.ID, State: testum.RunState(r.State), Kind: r.Kind, Command: r.Command,
		Parallelism: int(r.Parallelism), TimeoutSeconds: int(r.TimeoutSeconds), HostCount: int(r.HostCount),
		CreatedBy: r.CreatedBy, CreatedByName: r.CreatedByName, ParentRunID: r.ParentRunID,
		CoordinatorID: deref(r.CoordinatorID), CancelRequested: r.CancelRequested, AbortReason: r.AbortReason, Error: r.Error,
		CreatedAt: r.CreatedAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt,
	}
	spec, err := decodeRunSpec(r.Spec)
	if err != nil {
		return run, fmt.Errorf("run %s spec: %w", r.ID, err)
	}
	run.Spec = spec
	if err := json.Unmarshal(r.Targets, &run.Targets); err != nil {
		return run, fmt.Errorf("run %s targets: %w", r.ID, err)
	}
	return run, nil
}
