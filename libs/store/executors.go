package store

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/db"
)

// ExecutorRegister announces an executor (or re-announces it).
func (s *Store) ExecutorRegister(ctx context.Context, id, hostname string, pid, slots int) error {
	return wrap(s.q.ExecutorRegister(ctx, db.ExecutorRegisterParams{ID: id, Hostname: hostname, Pid: int32(pid), Slots: int32(slots)}), "executor "+id)
}

// ExecutorHeartbeat records that an executor is alive. ok=false means it
// was declared stopped (it must stop taking work).
func (s *Store) ExecutorHeartbeat(ctx context.Context, id string) (bool, error) {
	n, err := s.q.ExecutorHeartbeat(ctx, id)
	return n == 1, wrap(err, "executor heartbeat")
}

// ExecutorStop records a clean stop.
func (s *Store) ExecutorStop(ctx context.Context, id string) error {
	return wrap(s.q.ExecutorStop(ctx, id), "executor stop")
}

// ExecutorInfo is an executor as the API shows it.
type ExecutorInfo struct {
	ID          string    `json:"id"`
	Hostname    string    `json:"hostname"`
	PID         int       `json:"pid"`
	Slots       int       `json:"slots"`
	StartedAt   time.Time `json:"started_at"`
	HeartbeatAt time.Time `json:"heartbeat_at"`
}

// ExecutorsOnline lists executors that heartbeat after aliveAfter.
func (s *Store) ExecutorsOnline(ctx context.Context, aliveAfter time.Time) ([]ExecutorInfo, error) {
	rows, err := s.q.ExecutorsOnline(ctx, aliveAfter)
	if err != nil {
		return nil, wrap(err, "executors")
	}
	out := make([]ExecutorInfo, len(rows))
	for i, r := range rows {
		out[i] = ExecutorInfo{ID: r.ID, Hostname: r.Hostname, PID: int(r.Pid), Slots: int(r.Slots), StartedAt: r.StartedAt, HeartbeatAt: r.HeartbeatAt}
	}
	return out, nil
}

// ExecutorsDeadHolding lists executors that hold unfinished hosts but stopped
// heartbeating before aliveAfter.
func (s *Store) ExecutorsDeadHolding(ctx context.Context, aliveAfter time.Time) ([]string, error) {
	ids, err := s.q.ExecutorsDeadHolding(ctx, aliveAfter)
	return ids, wrap(err, "dead executors")
}

// LostHost is a host declared lost.
type LostHost struct {
	RunID   uuid.UUID
	Idx     int
	Name    string
	Attempt int
}

// RunHostsLoseExecutor declares every unfinished host of an executor lost.
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

// RunHostRequeue puts a lost host back in the queue (retry_lost).
func (s *Store) RunHostRequeue(ctx context.Context, run uuid.UUID, idx, attempt int) (bool, error) {
	n, err := s.q.RunHostRequeue(ctx, db.RunHostRequeueParams{RunID: run, Idx: int32(idx), Attempt: int32(attempt)})
	return n == 1, wrap(err, "requeue host")
}
