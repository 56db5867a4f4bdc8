package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/testum/testum/libs/db"
	"github.com/testum/testum/libs/testum"
)

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

// Progress is the coordinator's view of a run.
type Progress struct {
	Total, Pending, InFlight, Failures, Finished, OK int
}

// RunProgress counts a run's hosts for the coordinator.
func (s *Store) RunProgress(ctx context.Context, run uuid.UUID) (Progress, error) {
	_, p, err := s.RunWithProgress(ctx, run)
	return p, err
}

// RunWithProgress returns a run and the counts of its hosts, read together
// in one query.
func (s *Store) RunWithProgress(ctx context.Context, id uuid.UUID) (testum.Run, Progress, error) {
	r, err := s.q.RunWithProgress(ctx, id)
	if err != nil {
		return testum.Run{}, Progress{}, wrap(err, "run "+id.String())
	}
	run, err := runFromRow(r.Run)
	return run, Progress{Total: int(r.Total), Pending: int(r.Pending), InFlight: int(r.InFlight),
		Failures: int(r.Failures), Finished: int(r.Finished), OK: int(r.Ok)}, err
}

// Released is a host whose task the coordinator publishes.
type Released struct {
	Idx     int
	Attempt int // starts so far; the task authorizes Attempt+1
}

// RunHostsRelease marks up to n waiting hosts released and returns them,
// if executor coordinates the run (ErrNotCoordinator otherwise).
func (s *Store) RunHostsRelease(ctx context.Context, run uuid.UUID, executor string, n int) ([]Released, error) {
	if n <= 0 {
		return nil, nil
	}
	var out []Released
	err := s.atomically(ctx, func(tx *Store) error {
		idxs, err := tx.q.RunHostsNextToRelease(ctx, db.RunHostsNextToReleaseParams{RunID: run, Lim: int32(n)})
		if err != nil || len(idxs) == 0 {
			return err
		}
		rows, err := tx.q.RunHostsRelease(ctx, db.RunHostsReleaseParams{RunID: run, Idxs: idxs, ExecutorID: executor})
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return tx.coordinatorCheck(ctx, run, executor)
		}
		for _, r := range rows {
			out = append(out, Released{Idx: int(r.Idx), Attempt: int(r.Attempt)})
		}
		return nil
	})
	if errors.Is(err, ErrNotCoordinator) {
		return nil, err
	}
	return out, wrap(err, "release hosts")
}

// RunHostsReleasedWaiting returns the hosts released more than age ago, by
// the database clock, and not claimed since; none when executor no longer
// coordinates the run.
func (s *Store) RunHostsReleasedWaiting(ctx context.Context, run uuid.UUID, executor string, age time.Duration) ([]Released, error) {
	rows, err := s.q.RunHostsReleasedWaiting(ctx, db.RunHostsReleasedWaitingParams{RunID: run, ExecutorID: executor, Age: interval(age)})
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

// Claim is one task's claim on a host: RunHostClaim's arguments.
type Claim struct {
	Run     uuid.UUID
	Idx     int
	Attempt int
}

// RunHostsClaim makes several claims for one executor in one statement,
// each with RunHostClaim's conditions. It returns the hosts taken; a claim
// whose host is not among them was not claimable. A host named twice is
// taken once.
func (s *Store) RunHostsClaim(ctx context.Context, executor string, claims []Claim) ([]testum.RunHost, error) {
	if len(claims) == 0 {
		return nil, nil
	}
	p := db.RunHostsClaimParams{ExecutorID: executor, RunIds: make([]uuid.UUID, len(claims)),
		Idxs: make([]int32, len(claims)), Attempts: make([]int32, len(claims))}
	for i, c := range claims {
		p.RunIds[i], p.Idxs[i], p.Attempts[i] = c.Run, int32(c.Idx), int32(c.Attempt)
	}
	rows, err := s.q.RunHostsClaim(ctx, p)
	if err != nil {
		return nil, wrap(err, "claim hosts")
	}
	out := make([]testum.RunHost, len(rows))
	for i, r := range rows {
		out[i] = runHostFromRow(r)
	}
	return out, nil
}

// RunHostSetRunning moves a claimed host to running and records its
// platform as reached. ok=false means the host is no longer this
// executor's (the reaper declared it lost).
func (s *Store) RunHostSetRunning(ctx context.Context, run uuid.UUID, idx, attempt int, executor string, platform int64) (bool, error) {
	hs, err := s.RunHostsSetRunning(ctx, executor, []Running{{Run: run, Idx: idx, Attempt: attempt, Platform: platform}})
	return len(hs) == 1, err
}

// Running is one host reached by its executor: RunHostSetRunning's
// arguments.
type Running struct {
	Run      uuid.UUID
	Idx      int
	Attempt  int
	Platform int64 // recorded as reached
}

// RunHostsSetRunning moves several claimed hosts of one executor to running
// in one statement, each with RunHostSetRunning's conditions, and records
// their platforms as reached. It returns the hosts moved; a host not among
// them is no longer this executor's.
func (s *Store) RunHostsSetRunning(ctx context.Context, executor string, hosts []Running) ([]Running, error) {
	if len(hosts) == 0 {
		return nil, nil
	}
	p := db.RunHostsSetRunningParams{ExecutorID: executor, RunIds: make([]uuid.UUID, len(hosts)),
		Idxs: make([]int32, len(hosts)), Attempts: make([]int32, len(hosts)), PlatformIds: make([]int64, 0, len(hosts))}
	seen := make(map[int64]bool, len(hosts))
	for i, h := range hosts {
		p.RunIds[i], p.Idxs[i], p.Attempts[i] = h.Run, int32(h.Idx), int32(h.Attempt)
		if !seen[h.Platform] {
			seen[h.Platform] = true
			p.PlatformIds = append(p.PlatformIds, h.Platform)
		}
	}
	rows, err := s.q.RunHostsSetRunning(ctx, p)
	if err != nil {
		return nil, wrap(err, "hosts running")
	}
	platform := make(map[hostAttempt]int64, len(hosts))
	for _, h := range hosts {
		platform[hostAttempt{h.Run, h.Idx, h.Attempt}] = h.Platform
	}
	out := make([]Running, len(rows))
	for i, r := range rows {
		k := hostAttempt{r.RunID, int(r.Idx), int(r.Attempt)}
		out[i] = Running{Run: r.RunID, Idx: k.idx, Attempt: k.attempt, Platform: platform[k]}
	}
	return out, nil
}

type hostAttempt struct {
	run          uuid.UUID
	idx, attempt int
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
	// ConnectAttempts is how many SSH dials the host's connection took; 0
	// when none was made (a kept connection, or the host never got that far).
	ConnectAttempts int
}

// RunHostFinish records a host's end. ok=false means the host was no longer
// this executor's to finish.
func (s *Store) RunHostFinish(ctx context.Context, run uuid.UUID, idx, attempt int, executor string, r HostResult) (testum.RunHost, bool, error) {
	var ec *int32
	if r.ExitCode != nil {
		v := int32(*r.ExitCode)
		ec = &v
	}
	var dials *int32
	if r.ConnectAttempts > 0 {
		v := int32(r.ConnectAttempts)
		dials = &v
	}
	row, err := s.q.RunHostFinish(ctx, db.RunHostFinishParams{
		RunID: run, Idx: int32(idx), Attempt: int32(attempt), ExecutorID: executor,
		State: string(r.State), ExitCode: ec, Signal: r.Signal, Error: r.Error,
		OutputBytes: r.OutputBytes, Truncated: r.Truncated, OutputDigest: r.OutputDigest, LogKey: r.LogKey,
		ConnectAttempts: dials,
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return testum.RunHost{}, false, nil
	}
	if err != nil {
		return testum.RunHost{}, false, wrap(err, "finish host")
	}
	return runHostFromRow(row), true, nil
}

// Finish is one host's end: RunHostFinish's arguments.
type Finish struct {
	Run     uuid.UUID
	Idx     int
	Attempt int
	Result  HostResult
}

// RunHostsFinish records the ends of several hosts of one executor in one
// statement, each with RunHostFinish's conditions. It returns the hosts
// recorded; a host not among them was no longer this executor's to finish.
func (s *Store) RunHostsFinish(ctx context.Context, executor string, fs []Finish) ([]testum.RunHost, error) {
	if len(fs) == 0 {
		return nil, nil
	}
	n := len(fs)
	p := db.RunHostsFinishParams{ExecutorID: executor,
		RunIds: make([]uuid.UUID, n), Idxs: make([]int32, n), Attempts: make([]int32, n), States: make([]string, n),
		ExitCodes: make([]int32, n), HasExitCodes: make([]bool, n), Signals: make([]string, n), Errors: make([]string, n),
		OutputBytes: make([]int64, n), Truncated: make([]bool, n), OutputDigests: make([]string, n),
		LogKeys: make([]string, n), ConnectAttempts: make([]int32, n)}
	for i, f := range fs {
		r := f.Result
		p.RunIds[i], p.Idxs[i], p.Attempts[i] = f.Run, int32(f.Idx), int32(f.Attempt)
		p.States[i], p.Signals[i], p.Errors[i] = string(r.State), r.Signal, r.Error
		if r.ExitCode != nil {
			p.ExitCodes[i], p.HasExitCodes[i] = int32(*r.ExitCode), true
		}
		p.OutputBytes[i], p.Truncated[i], p.OutputDigests[i], p.LogKeys[i] = r.OutputBytes, r.Truncated, r.OutputDigest, r.LogKey
		p.ConnectAttempts[i] = int32(max(r.ConnectAttempts, 0))
	}
	rows, err := s.q.RunHostsFinish(ctx, p)
	if err != nil {
		return nil, wrap(err, "finish hosts")
	}
	out := make([]testum.RunHost, len(rows))
	for i, r := range rows {
		out[i] = runHostFromRow(r)
	}
	return out, nil
}

// EndedHost names a host moved to a final state in bulk.
type EndedHost struct {
	Idx     int
	Name    string
	Attempt int // starts so far: 0 when the host was never claimed
}

// RunHostsEndQueued moves every still-queued host of a run to state, if
// executor coordinates the run (ErrNotCoordinator otherwise).
func (s *Store) RunHostsEndQueued(ctx context.Context, run uuid.UUID, executor string, state testum.HostState) ([]EndedHost, error) {
	rows, err := s.q.RunHostsEndQueued(ctx, db.RunHostsEndQueuedParams{RunID: run, ExecutorID: executor, State: string(state)})
	if err != nil {
		return nil, wrap(err, "end queued hosts")
	}
	if len(rows) == 0 {
		return nil, s.coordinatorCheck(ctx, run, executor)
	}
	out := make([]EndedHost, len(rows))
	for i, r := range rows {
		out[i] = EndedHost{Idx: int(r.Idx), Name: r.Name, Attempt: int(r.Attempt)}
	}
	return out, nil
}

// RunHostEndUnstarted ends a host that never started. ok=false when it was
// not queued any more.
func (s *Store) RunHostEndUnstarted(ctx context.Context, run uuid.UUID, idx int, state testum.HostState, msg string) (bool, error) {
	n, err := s.q.RunHostEndUnstarted(ctx, db.RunHostEndUnstartedParams{RunID: run, Idx: int32(idx), State: string(state), Error: msg})
	return n == 1, wrap(err, "end host")
}

// LostHost is a host declared lost.
type LostHost struct {
	RunID   uuid.UUID
	Idx     int
	Name    string
	Attempt int
}

// RunHostsLoseExecutor declares every running host of an executor lost.
func (s *Store) RunHostsLoseExecutor(ctx context.Context, executor string) ([]LostHost, error) {
	rows, err := s.q.RunHostsLoseExecutor(ctx, &executor)
	if err != nil {
		return nil, wrap(err, "lose hosts")
	}
	out := make([]LostHost, len(rows))
	for i, r := range rows {
		out[i] = LostHost{RunID: r.RunID, Idx: int(r.Idx), Name: r.Name, Attempt: int(r.Attempt)}
	}
	return out, nil
}

// RunHostsRequeueUnstarted puts every connecting host of an executor back
// in the queue: none of them started its command.
func (s *Store) RunHostsRequeueUnstarted(ctx context.Context, executor string) ([]LostHost, error) {
	rows, err := s.q.RunHostsRequeueUnstarted(ctx, &executor)
	if err != nil {
		return nil, wrap(err, "requeue unstarted hosts")
	}
	out := make([]LostHost, len(rows))
	for i, r := range rows {
		out[i] = LostHost{RunID: r.RunID, Idx: int(r.Idx), Name: r.Name, Attempt: int(r.Attempt)}
	}
	return out, nil
}

// RunHostRequeue puts a lost host back in the queue (retry_lost).
func (s *Store) RunHostRequeue(ctx context.Context, run uuid.UUID, idx, attempt int) (bool, error) {
	n, err := s.q.RunHostRequeue(ctx, db.RunHostRequeueParams{RunID: run, Idx: int32(idx), Attempt: int32(attempt)})
	return n == 1, wrap(err, "requeue host")
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
	if r.ConnectAttempts != nil {
		v := int(*r.ConnectAttempts)
		h.ConnectAttempts = &v
	}
	return h
}
