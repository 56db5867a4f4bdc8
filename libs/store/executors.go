package store

import (
	"context"
	"time"

	"github.com/testum/testum/libs/db"
)

// Executor liveness defaults: executors heartbeat every
// DefaultExecutorHeartbeat, and one silent for DefaultExecutorDeadAfter is
// dead (its hosts end lost, the gateway shows it offline).
const (
	DefaultExecutorHeartbeat = 5 * time.Second
	DefaultExecutorDeadAfter = 6 * DefaultExecutorHeartbeat
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
	ID          string
	Hostname    string
	PID         int
	Slots       int
	StartedAt   time.Time
	HeartbeatAt time.Time
}

// ExecutorsOnline lists the executors that heartbeat within the last
// deadAfter, by the database clock (heartbeats are recorded with it).
func (s *Store) ExecutorsOnline(ctx context.Context, deadAfter time.Duration) ([]ExecutorInfo, error) {
	rows, err := s.q.ExecutorsOnline(ctx, interval(deadAfter))
	if err != nil {
		return nil, wrap(err, "executors")
	}
	out := make([]ExecutorInfo, len(rows))
	for i, r := range rows {
		out[i] = ExecutorInfo{ID: r.ID, Hostname: r.Hostname, PID: int(r.Pid), Slots: int(r.Slots), StartedAt: r.StartedAt, HeartbeatAt: r.HeartbeatAt}
	}
	return out, nil
}

// ExecutorsDeadHolding lists executors that hold unfinished hosts but have
// not heartbeat within the last deadAfter, by the database clock. Silence
// counts only from the database server's start on: while PostgreSQL was
// down or restarting no executor could heartbeat, so after it comes back
// an executor is dead only once it stayed silent for deadAfter with the
// server up (the same rule decides takeovers and orphaned runs).
func (s *Store) ExecutorsDeadHolding(ctx context.Context, deadAfter time.Duration) ([]string, error) {
	ids, err := s.q.ExecutorsDeadHolding(ctx, db.ExecutorsDeadHoldingParams{DeadAfter: interval(deadAfter), HeardSince: s.heardFrom()})
	return ids, wrap(err, "dead executors")
}
