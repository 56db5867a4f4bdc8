// Package accounts owns who can log in: users and their roles, master keys,
// sessions, and the first super_admin. The gateway's handlers and the
// `testum user` command both go through it, so the rules (no one deletes or
// demotes themselves or the last super_admin; a changed key or role ends
// the user's sessions) hold whichever way in is used.
package accounts

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// Store is what the service reads outside a transaction, and the ways in.
type Store interface {
	UserByName(ctx context.Context, username string) (testum.User, string, error)
	UserKeyHash(ctx context.Context, id int64) (string, error)
	Audit(ctx context.Context, e testum.AuditEntry) error
	InTx(ctx context.Context, fn func(tx Tx) error) error
	// Once runs fn in a transaction unless another process runs the same
	// job now; it reports whether fn ran.
	Once(ctx context.Context, job string, fn func(tx Tx) error) (bool, error)
}

// Tx is what the service does inside a transaction.
type Tx interface {
	UserCount(ctx context.Context) (int64, error)
	UserCreate(ctx context.Context, username, role, keyHash string, createdBy *int64) (testum.User, error)
	UserGet(ctx context.Context, id int64) (testum.User, error)
	UserSetRole(ctx context.Context, id int64, role string) (testum.User, error)
	UserSetKey(ctx context.Context, id int64, keyHash string) error
	UserDelete(ctx context.Context, id int64) error
	UserTouchLogin(ctx context.Context, id int64) error
	SuperAdminsLocked(ctx context.Context) ([]int64, error)
	SessionCreate(ctx context.Context, ns store.NewSession) (time.Time, error)
	SessionGet(ctx context.Context, id uuid.UUID) (testum.Session, error)
	SessionEnd(ctx context.Context, id uuid.UUID, reason string) (bool, error)
	SessionsEndForUser(ctx context.Context, userID int64, reason string) ([]uuid.UUID, error)
	SessionsExpire(ctx context.Context, idle time.Duration) ([]uuid.UUID, error)
	LoginFailuresPrune(ctx context.Context, age time.Duration) error
	Audit(ctx context.Context, e testum.AuditEntry) error
}

// Postgres adapts the store to Store.
func Postgres(st *store.Store) Store { return pgStore{st} }

type pgStore struct{ *store.Store }

func (s pgStore) InTx(ctx context.Context, fn func(tx Tx) error) error {
	return s.Store.InTx(ctx, func(tx *store.Tx) error { return fn(tx) })
}

func (s pgStore) Once(ctx context.Context, job string, fn func(tx Tx) error) (bool, error) {
	return s.Store.Once(ctx, job, func(tx *store.Tx) error { return fn(tx) })
}

// Defaults of the session limits; testum's settings table shows the same
// values.
const (
	DefaultSessionIdle = 15 * time.Minute
	DefaultSessionMax  = 24 * time.Hour
)

// DefaultAdminName is the name of the first super_admin when none is given.
const DefaultAdminName = "admin"

// Config tunes the service. Zero fields take defaults; Tokens is needed
// only to open sessions (Login, RotateKey).
type Config struct {
	Tokens      *auth.Tokens
	SessionIdle time.Duration // a session ends after this long without a request (default 15m)
	SessionMax  time.Duration // and this long after login whatever happens (default 24h)
	Now         func() time.Time
	Logger      *slog.Logger
	// Ended, if set, is told the ids of sessions that ended, once the
	// change is committed (the gateway broadcasts them to close the
	// sessions' WebSockets on every gateway).
	Ended func(sessions []uuid.UUID)
}

// CheckAndSetDefaults fills zero fields.
func (c *Config) CheckAndSetDefaults() error {
	if c.SessionIdle == 0 {
		c.SessionIdle = DefaultSessionIdle
	}
	if c.SessionMax == 0 {
		c.SessionMax = DefaultSessionMax
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Service manages users, master keys and sessions.
type Service struct {
	cfg Config
	st  Store
	log *slog.Logger
}

// New builds the service.
func New(cfg Config, st Store) (*Service, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, st: st, log: cfg.Logger}, nil
}

// auditAlone writes an entry that records no change (a failed login, a
// wrong key); a failure to write it is logged, not returned.
func (s *Service) auditAlone(ctx context.Context, e testum.AuditEntry) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.st.Audit(ctx, e); err != nil {
		s.log.Error("audit write failed", "action", e.Action, "err", err)
	}
}

func failed(e testum.AuditEntry) testum.AuditEntry {
	e.Outcome = testum.AuditFailed
	return e
}
