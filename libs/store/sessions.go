package store

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/db"
	"github.com/testum/testum/libs/testum"
)

// A session is active while it has not ended, is before its expires_at and
// has seen activity within the idle limit; the queries decide that against
// the store's clock (the database's unless one is injected).

// NewSession is a session to open.
type NewSession struct {
	ID        uuid.UUID
	UserID    int64
	TokenHash []byte
	Lifetime  time.Duration // the absolute limit: it expires this long after it opens
	IP        string
	UserAgent string
}

// SessionCreate opens a session and returns when it expires: Lifetime
// from now by the store's clock, the one every session check uses.
func (s *Store) SessionCreate(ctx context.Context, ns NewSession) (time.Time, error) {
	expires, err := s.q.SessionCreate(ctx, db.SessionCreateParams{ID: ns.ID, UserID: ns.UserID, TokenHash: ns.TokenHash,
		Now: s.clock(), Lifetime: interval(ns.Lifetime), Ip: ns.IP, UserAgent: ns.UserAgent})
	return expires, wrap(err, "session")
}

// SessionTouch checks that a session is active, unexpired and not idle for
// longer than idle, records activity now, and returns it with its user.
func (s *Store) SessionTouch(ctx context.Context, id uuid.UUID, tokenHash []byte, idle time.Duration) (testum.Session, error) {
	r, err := s.q.SessionTouch(ctx, db.SessionTouchParams{ID: id, TokenHash: tokenHash, Now: s.clock(), Idle: interval(idle)})
	if err != nil {
		return testum.Session{}, wrap(err, "session")
	}
	return testum.Session{ID: r.ID.String(), UserID: r.UserID, Username: r.Username, Role: r.Role, Active: true,
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt}, nil
}

// SessionCheck is SessionTouch without recording activity.
func (s *Store) SessionCheck(ctx context.Context, id uuid.UUID, idle time.Duration) (testum.Session, error) {
	r, err := s.q.SessionCheck(ctx, db.SessionCheckParams{ID: id, Now: s.clock(), Idle: interval(idle)})
	if err != nil {
		return testum.Session{}, wrap(err, "session")
	}
	return testum.Session{ID: r.ID.String(), UserID: r.UserID, Username: r.Username, Role: r.Role, Active: true}, nil
}

// SessionGet returns a session's owner and whether it is active.
func (s *Store) SessionGet(ctx context.Context, id uuid.UUID) (testum.Session, error) {
	r, err := s.q.SessionGet(ctx, id)
	if err != nil {
		return testum.Session{}, wrap(err, "session")
	}
	return testum.Session{ID: r.ID.String(), UserID: r.UserID, Username: r.Username, Role: r.Role, Active: r.Active}, nil
}

// SessionEnd ends one session; it reports whether it was active.
func (s *Store) SessionEnd(ctx context.Context, id uuid.UUID, reason string) (bool, error) {
	n, err := s.q.SessionEnd(ctx, db.SessionEndParams{ID: id, Now: s.clock(), Reason: reason})
	return n > 0, wrap(err, "session")
}

// SessionsEndForUser ends every active session of a user.
func (s *Store) SessionsEndForUser(ctx context.Context, userID int64, reason string) ([]uuid.UUID, error) {
	ids, err := s.q.SessionsEndForUser(ctx, db.SessionsEndForUserParams{UserID: userID, Now: s.clock(), Reason: reason})
	return ids, wrap(err, "sessions")
}

// SessionsExpire ends every session past its absolute limit or idle for
// longer than idle.
func (s *Store) SessionsExpire(ctx context.Context, idle time.Duration) ([]uuid.UUID, error) {
	ids, err := s.q.SessionsExpire(ctx, db.SessionsExpireParams{Now: s.clock(), Idle: interval(idle)})
	return ids, wrap(err, "sessions")
}

// SessionList pages through sessions, most recently active first, and
// counts them all; activeOnly leaves out those ended, expired or idle for
// longer than idle.
func (s *Store) SessionList(ctx context.Context, activeOnly bool, idle time.Duration, limit, offset int) ([]testum.Session, int64, error) {
	now := s.clock()
	page := func(limit, offset int) ([]db.SessionListRow, error) {
		return s.q.SessionList(ctx, db.SessionListParams{ActiveOnly: activeOnly, Now: now, Idle: interval(idle),
			Lim: int32(limit), Off: int32(offset)})
	}
	rows, total, err := paged(page, limit, offset, func(r db.SessionListRow) int64 { return r.Total })
	if err != nil {
		return nil, 0, wrap(err, "sessions")
	}
	out := make([]testum.Session, 0, len(rows))
	for _, r := range rows {
		out = append(out, testum.Session{ID: r.ID.String(), UserID: r.UserID, Username: r.Username, Role: r.Role,
			Active: r.Active, CreatedAt: r.CreatedAt, LastActivity: r.LastActivity, ExpiresAt: r.ExpiresAt,
			EndedAt: r.EndedAt, EndReason: r.EndReason, IP: r.Ip, UserAgent: r.UserAgent})
	}
	return out, total, nil
}
