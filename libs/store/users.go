package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/db"
	"github.com/testum/testum/libs/testum"
)

func userOf(u db.User) testum.User {
	return testum.User{ID: u.ID, Username: u.Username, Role: u.Role, CreatedAt: u.CreatedAt,
		KeyChangedAt: u.KeyChangedAt, LastLoginAt: u.LastLoginAt}
}

// UserCreate adds a user with the bcrypt hash of its master key.
func (tx *Tx) UserCreate(ctx context.Context, username, role, keyHash string, createdBy *int64) (testum.User, error) {
	u, err := tx.q.UserCreate(ctx, db.UserCreateParams{Username: username, Role: role, KeyHash: keyHash,
		CreatedBy: createdBy, Now: tx.s.now()})
	if err != nil {
		return testum.User{}, wrap(err, "user "+username)
	}
	return userOf(u), nil
}

// UserCount counts every user.
func (s *Store) UserCount(ctx context.Context) (int64, error) {
	n, err := s.q.UserCount(ctx)
	return n, wrap(err, "users")
}

// UserGet returns one user.
func (s *Store) UserGet(ctx context.Context, id int64) (testum.User, error) {
	u, err := s.q.UserGet(ctx, id)
	if err != nil {
		return testum.User{}, wrap(err, "user")
	}
	return userOf(u), nil
}

// UserByName returns a user and its key hash, for login.
func (s *Store) UserByName(ctx context.Context, username string) (testum.User, string, error) {
	u, err := s.q.UserByName(ctx, username)
	if err != nil {
		return testum.User{}, "", wrap(err, "user")
	}
	return userOf(u), u.KeyHash, nil
}

// UserKeyHash returns a user's key hash, for re-authentication.
func (s *Store) UserKeyHash(ctx context.Context, id int64) (string, error) {
	u, err := s.q.UserGet(ctx, id)
	if err != nil {
		return "", wrap(err, "user")
	}
	return u.KeyHash, nil
}

// UserList pages through users by name.
func (s *Store) UserList(ctx context.Context, limit, offset int) ([]testum.User, int64, error) {
	rows, err := s.q.UserList(ctx, db.UserListParams{Lim: int32(limit), Off: int32(offset)})
	if err != nil {
		return nil, 0, wrap(err, "users")
	}
	n, err := s.q.UserCount(ctx)
	if err != nil {
		return nil, 0, wrap(err, "users")
	}
	out := make([]testum.User, 0, len(rows))
	for _, r := range rows {
		out = append(out, userOf(r))
	}
	return out, n, nil
}

// UserByNameTx returns a user inside tx.
func (tx *Tx) UserGet(ctx context.Context, id int64) (testum.User, error) {
	u, err := tx.q.UserGet(ctx, id)
	if err != nil {
		return testum.User{}, wrap(err, "user")
	}
	return userOf(u), nil
}

// SuperAdminsLocked locks and returns the ids of every super_admin, so that
// a deletion or demotion can check that another one remains.
func (tx *Tx) SuperAdminsLocked(ctx context.Context) ([]int64, error) {
	ids, err := tx.q.UserLockSuperAdmins(ctx)
	return ids, wrap(err, "users")
}

// UserDelete deletes a user; its sessions go with it.
func (tx *Tx) UserDelete(ctx context.Context, id int64) error {
	n, err := tx.q.UserDelete(ctx, id)
	if err != nil {
		return wrap(err, "user")
	}
	if n == 0 {
		return testum.NotFound("user not found")
	}
	return nil
}

// UserSetRole changes a user's role.
func (tx *Tx) UserSetRole(ctx context.Context, id int64, role string) (testum.User, error) {
	u, err := tx.q.UserSetRole(ctx, db.UserSetRoleParams{ID: id, Role: role, Now: tx.s.now()})
	if err != nil {
		return testum.User{}, wrap(err, "user")
	}
	return userOf(u), nil
}

// UserSetKey replaces a user's master key hash.
func (tx *Tx) UserSetKey(ctx context.Context, id int64, keyHash string) error {
	n, err := tx.q.UserSetKey(ctx, db.UserSetKeyParams{ID: id, KeyHash: keyHash, Now: tx.s.now()})
	if err != nil {
		return wrap(err, "user")
	}
	if n == 0 {
		return testum.NotFound("user not found")
	}
	return nil
}

// UserTouchLogin records a successful login.
func (tx *Tx) UserTouchLogin(ctx context.Context, id int64) error {
	return wrap(tx.q.UserTouchLogin(ctx, db.UserTouchLoginParams{ID: id, Now: tx.s.now()}), "user")
}

// NewSession is a session to open.
type NewSession struct {
	ID        uuid.UUID
	UserID    int64
	TokenHash []byte
	ExpiresAt time.Time
	IP        string
	UserAgent string
}

// SessionCreate opens a session.
func (tx *Tx) SessionCreate(ctx context.Context, ns NewSession) error {
	return wrap(tx.q.SessionCreate(ctx, db.SessionCreateParams{ID: ns.ID, UserID: ns.UserID, TokenHash: ns.TokenHash,
		Now: tx.s.now(), ExpiresAt: ns.ExpiresAt, Ip: ns.IP, UserAgent: ns.UserAgent}), "session")
}

// SessionTouch checks that a session is active, unexpired and not idle
// since idleSince, records activity now, and returns it with its user.
func (s *Store) SessionTouch(ctx context.Context, id uuid.UUID, tokenHash []byte, idleSince time.Time) (testum.Session, error) {
	r, err := s.q.SessionTouch(ctx, db.SessionTouchParams{ID: id, TokenHash: tokenHash, Now: s.now(), IdleSince: idleSince})
	if err != nil {
		return testum.Session{}, wrap(err, "session")
	}
	return testum.Session{ID: r.ID.String(), UserID: r.UserID, Username: r.Username, Role: r.Role, Active: true,
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt}, nil
}

// SessionCheck is SessionTouch without recording activity.
func (s *Store) SessionCheck(ctx context.Context, id uuid.UUID, idleSince time.Time) (testum.Session, error) {
	r, err := s.q.SessionCheck(ctx, db.SessionCheckParams{ID: id, Now: s.now(), IdleSince: idleSince})
	if err != nil {
		return testum.Session{}, wrap(err, "session")
	}
	return testum.Session{ID: r.ID.String(), UserID: r.UserID, Username: r.Username, Role: r.Role, Active: true}, nil
}

// SessionGet returns a session's owner and whether it is active.
func (tx *Tx) SessionGet(ctx context.Context, id uuid.UUID) (testum.Session, error) {
	r, err := tx.q.SessionGet(ctx, id)
	if err != nil {
		return testum.Session{}, wrap(err, "session")
	}
	return testum.Session{ID: r.ID.String(), UserID: r.UserID, Username: r.Username, Role: r.Role, Active: r.Active}, nil
}

// SessionEnd ends one session; it reports whether it was active.
func (tx *Tx) SessionEnd(ctx context.Context, id uuid.UUID, reason string) (bool, error) {
	n, err := tx.q.SessionEnd(ctx, db.SessionEndParams{ID: id, Now: tx.s.now(), Reason: reason})
	return n > 0, wrap(err, "session")
}

// SessionsEndForUser ends every active session of a user.
func (tx *Tx) SessionsEndForUser(ctx context.Context, userID int64, reason string) ([]uuid.UUID, error) {
	ids, err := tx.q.SessionsEndForUser(ctx, db.SessionsEndForUserParams{UserID: userID, Now: tx.s.now(), Reason: reason})
	return ids, wrap(err, "sessions")
}

// SessionsExpire ends every session past its absolute or idle limit.
func (tx *Tx) SessionsExpire(ctx context.Context, idleSince time.Time) ([]uuid.UUID, error) {
	ids, err := tx.q.SessionsExpire(ctx, db.SessionsExpireParams{Now: tx.s.now(), IdleSince: idleSince})
	return ids, wrap(err, "sessions")
}

// SessionList pages through sessions, most recently active first.
func (s *Store) SessionList(ctx context.Context, activeOnly bool, idleSince time.Time, limit, offset int) ([]testum.Session, int64, error) {
	now := s.now()
	rows, err := s.q.SessionList(ctx, db.SessionListParams{ActiveOnly: activeOnly, Now: now, IdleSince: idleSince,
		Lim: int32(limit), Off: int32(offset)})
	if err != nil {
		return nil, 0, wrap(err, "sessions")
	}
	n, err := s.q.SessionCount(ctx, db.SessionCountParams{ActiveOnly: activeOnly, Now: now, IdleSince: idleSince})
	if err != nil {
		return nil, 0, wrap(err, "sessions")
	}
	out := make([]testum.Session, 0, len(rows))
	for _, r := range rows {
		out = append(out, testum.Session{ID: r.ID.String(), UserID: r.UserID, Username: r.Username, Role: r.Role,
			Active: r.Active && r.ExpiresAt.After(now) && r.LastActivity.After(idleSince), CreatedAt: r.CreatedAt,
			LastActivity: r.LastActivity, ExpiresAt: r.ExpiresAt, EndedAt: r.EndedAt, EndReason: r.EndReason,
			IP: r.Ip, UserAgent: r.UserAgent})
	}
	return out, n, nil
}

// LoginAttempt records a login attempt as a failure before its key is
// checked, committed at once so that concurrent attempts count each other;
// it returns the attempt's id for LoginRefund.
func (s *Store) LoginAttempt(ctx context.Context, ip, username string) (int64, error) {
	id, err := s.q.LoginAttemptAdd(ctx, db.LoginAttemptAddParams{Now: s.now(), Ip: ip, Username: username})
	return id, wrap(err, "login attempt")
}

// LoginRefund forgets an attempt that turned out not to be a failure.
func (s *Store) LoginRefund(ctx context.Context, id int64) error {
	return wrap(s.q.LoginAttemptRefund(ctx, id), "login attempt")
}

// LoginCounts are the failed logins within a window that bear on one
// attempt (which counts itself).
type LoginCounts struct {
	ByPair     int64     // this username from this address
	OldestPair time.Time // the oldest of those
	NewestPair time.Time // the newest of those before this attempt (since, when none)
	ByIP       int64     // this address, any username
	OldestIP   time.Time
	ByUser     int64 // this username, any address
}

// LoginAttemptCounts counts the failures since a moment around attempt self.
func (s *Store) LoginAttemptCounts(ctx context.Context, self int64, ip, username string, since time.Time) (LoginCounts, error) {
	r, err := s.q.LoginAttemptCounts(ctx, db.LoginAttemptCountsParams{Ip: ip, Username: username, Now: s.now(), Self: self, Since: since})
	if err != nil {
		return LoginCounts{}, wrap(err, "login failures")
	}
	return LoginCounts{ByPair: r.ByPair, OldestPair: r.OldestPair, NewestPair: r.NewestPair, ByIP: r.ByIp,
		OldestIP: r.OldestIp, ByUser: r.ByUser}, nil
}

// LoginFailuresPrune forgets failures older than before.
func (tx *Tx) LoginFailuresPrune(ctx context.Context, before time.Time) error {
	return wrap(tx.q.LoginFailuresPrune(ctx, before), "login failures")
}

// AuditFilter selects audit entries.
type AuditFilter struct {
	Actor, Action, Target string
	Since, Until          *time.Time
}

// AuditList pages through the audit log, newest first.
func (s *Store) AuditList(ctx context.Context, f AuditFilter, limit, offset int) ([]testum.AuditEntry, int64, error) {
	rows, err := s.q.AuditList(ctx, db.AuditListParams{Actor: f.Actor, Action: f.Action, Target: f.Target,
		Since: f.Since, Until: f.Until, Lim: int32(limit), Off: int32(offset)})
	if err != nil {
		return nil, 0, wrap(err, "audit log")
	}
	n, err := s.q.AuditCount(ctx, db.AuditCountParams{Actor: f.Actor, Action: f.Action, Target: f.Target,
		Since: f.Since, Until: f.Until})
	if err != nil {
		return nil, 0, wrap(err, "audit log")
	}
	out := make([]testum.AuditEntry, 0, len(rows))
	for _, r := range rows {
		e := testum.AuditEntry{ID: r.ID, At: r.At, ActorID: r.ActorID, Actor: r.Actor, Action: r.Action,
			Target: r.Target, IP: r.Ip, Outcome: r.Outcome}
		_ = json.Unmarshal(r.Details, &e.Details)
		out = append(out, e)
	}
	return out, n, nil
}

// UserCountTx counts users inside tx.
func (tx *Tx) UserCountTx(ctx context.Context) (int64, error) {
	n, err := tx.q.UserCount(ctx)
	return n, wrap(err, "users")
}
