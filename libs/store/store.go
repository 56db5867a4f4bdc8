// Package store is the hand-written layer over the sqlc code in libs/db: the
// connection pool, transactions, migrations under an advisory lock, rows
// turned into domain types and PostgreSQL errors turned into testum errors.
// No other package imports libs/db.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/testum/testum/libs/db"
	"github.com/testum/testum/libs/testum"
	"github.com/testum/testum/schema"
)

// Sealer encrypts secrets at rest (libs/secrets implements it). The store
// binds each ciphertext to its row and column through the associated data.
type Sealer interface {
	Seal(plaintext, ad []byte) ([]byte, error)
	Open(ciphertext, ad []byte) ([]byte, error)
	CurrentKeyID() string
}

// DBTX is what the store's queries run on: the pool, or a transaction
// (both *pgxpool.Pool and pgx.Tx satisfy it). Begin on a transaction opens
// a savepoint, so InTx nests.
type DBTX interface {
	db.DBTX
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Store is the database of testum. Its methods run on whatever DBTX it is
// bound to: the pool for the value Open returns, a transaction for the one
// InTx hands its function. Every query is written once and works on both.
type Store struct {
	pool   *pgxpool.Pool
	db     DBTX
	q      *db.Queries
	sealer Sealer
	log    *slog.Logger
	now    func() time.Time // nil: the database clock
	heard  func() time.Time // nil: the database server's start
}

// Tx is a Store bound to a transaction; the name keeps InTx's callers
// readable.
type Tx = Store

// Config for Open.
type Config struct {
	URL      string
	MaxConns int32
	Sealer   Sealer
	Logger   *slog.Logger
	// Now replaces the database clock for session and login times, so that
	// tests can move time forward; nil (the default) compares and records
	// them with PostgreSQL's now().
	Now func() time.Time
	// HeardSince replaces the database server's start time, from which an
	// executor's silence counts (ExecutorsDeadHolding), so that tests on a
	// server started moments ago can age heartbeats; nil (the default) uses
	// pg_postmaster_start_time().
	HeardSince func() time.Time
}

// Open connects to PostgreSQL. It does not migrate: call Migrate first.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", redactURLError(err))
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	} else if !strings.Contains(cfg.URL, "pool_max_conns") && pc.MaxConns < 32 {
		// pgx's default (the number of CPUs, at least 4) starves a fan-out:
		// every host in flight makes a few short round trips (claim,
		// running, finish), so hosts queue for a connection rather than
		// for their SSH session. pool_max_conns in DATABASE_URL wins.
		pc.MaxConns = 32
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Store{pool: pool, db: pool, q: db.New(pool), sealer: cfg.Sealer, log: cfg.Logger, now: cfg.Now, heard: cfg.HeardSince}, nil
}

// CheckURL reports whether url is a DATABASE_URL that Open and Migrate can
// use, without connecting: a malformed one is a configuration error to
// report at once, not a database to wait for.
func CheckURL(url string) error {
	if _, err := pgxpool.ParseConfig(url); err != nil {
		return fmt.Errorf("DATABASE_URL: %w", redactURLError(err))
	}
	return nil
}

// Close releases the pool (of every store bound to it).
func (s *Store) Close() { s.pool.Close() }

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// clock is the injected time for a query's @now, or nil for the database's
// now().
func (s *Store) clock() *time.Time {
	if s.now == nil {
		return nil
	}
	t := s.now()
	return &t
}

// heardFrom is the injected start of the time in which executors' silence
// counts, or nil for the database server's start.
func (s *Store) heardFrom() *time.Time {
	if s.heard == nil {
		return nil
	}
	t := s.heard()
	return &t
}

// Pool exposes the pool to tests that inspect tables directly.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Migrate applies the embedded migrations. Concurrent callers (several
// gateways starting at once) serialize on a PostgreSQL advisory lock.
func Migrate(ctx context.Context, url string, log *slog.Logger) error {
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", redactURLError(err))
	}
	sqldb := stdlib.OpenDB(*cc)
	defer func() { _ = sqldb.Close() }() // migrated or not, the pool's close has nothing to add
	return migrateDB(ctx, sqldb, log)
}

func migrateDB(ctx context.Context, sqldb *sql.DB, log *slog.Logger) error {
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, sqldb, schema.Migrations,
		goose.WithSessionLocker(locker), goose.WithVerbose(false))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if log != nil {
		for _, r := range res {
			log.Info("migration applied", "version", r.Source.Version, "file", r.Source.Path)
		}
	}
	return nil
}

// InTx runs fn in a transaction, committing when it returns nil; fn gets
// the store bound to that transaction. Inside a transaction already, InTx
// runs fn in a savepoint.
func (s *Store) InTx(ctx context.Context, fn func(tx *Tx) error) error {
	err := pgx.BeginFunc(ctx, s.db, func(ptx pgx.Tx) error {
		return fn(s.on(ptx))
	})
	var te *testum.Error
	if err != nil && !errors.As(err, &te) && unreachable(err) {
		return unavailable(err, "transaction")
	}
	return err
}

// atomically runs fn in a transaction: the one the store is bound to, or a
// new one on the pool. Methods that write several rows use it, so that they
// are whole whether called on the pool or inside InTx.
func (s *Store) atomically(ctx context.Context, fn func(tx *Store) error) error {
	if _, ok := s.db.(pgx.Tx); ok {
		return fn(s)
	}
	return s.InTx(ctx, fn)
}

// on returns a copy of the store that runs on d.
func (s *Store) on(d DBTX) *Store {
	c := *s
	c.db, c.q = d, db.New(d)
	return &c
}

// Once runs fn in a transaction only if no other process is running the job
// of that name right now (a transaction-level advisory lock): periodic jobs
// run once per tick across the cluster, however many replicas tick. It
// reports whether fn ran.
func (s *Store) Once(ctx context.Context, job string, fn func(tx *Tx) error) (bool, error) {
	h := fnv.New64a()
	h.Write([]byte("testum.job." + job))
	key := int64(h.Sum64())
	ran := false
	err := s.InTx(ctx, func(tx *Tx) error {
		var got bool
		if err := tx.db.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", key).Scan(&got); err != nil {
			return err
		}
		if !got {
			return nil
		}
		ran = true
		return fn(tx)
	})
	return ran, err
}

// wrap maps PostgreSQL errors to testum errors; what names the thing.
func wrap(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return &testum.Error{Code: testum.CodeNotFound, Message: what + " not found"}
	}
	if unreachable(err) {
		return unavailable(err, what)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505": // unique_violation
			return &testum.Error{Code: testum.CodeConflict, Message: what + " already exists", Err: err}
		case "23503": // foreign_key_violation
			return &testum.Error{Code: testum.CodeConflict, Message: what + " is referenced by or refers to something that does not exist", Err: err}
		case "23514", "22P02", "22003": // check_violation, invalid_text_representation, out of range
			return &testum.Error{Code: testum.CodeInvalid, Message: what + " is invalid", Err: err}
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// unreachable reports whether err says that PostgreSQL could not be asked:
// no connection could be made (it is down, starting or refusing), or the
// connection broke under the query (it shut down or restarted). Such a
// request may succeed when tried again, unlike a query PostgreSQL refused.
func unreachable(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "57P01", "57P02", "57P03": // admin_shutdown, crash_shutdown, cannot_connect_now
			return true
		}
		return strings.HasPrefix(pe.Code, "08") // connection_exception
	}
	var ne net.Error
	return errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		(errors.As(err, &ne) && !ne.Timeout())
}

// unavailable is the error of a request PostgreSQL could not be asked; its
// message names no internals (the cause, with the socket or host, is only
// in Err, for the log).
func unavailable(err error, what string) error {
	return &testum.Error{Code: testum.CodeUnavailable, Message: "the database is unavailable; try again",
		Err: fmt.Errorf("%s: %w", what, err)}
}

// Refused reports whether PostgreSQL answered a statement with an error of
// its own (a value it refused), as opposed to not answering at all (or
// answering that it is shutting down or starting, which is unreachable).
func Refused(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && !unreachable(err)
}

// IsNotFound reports whether err is a not-found error.
func IsNotFound(err error) bool { return testum.CodeOf(err) == testum.CodeNotFound }

// redactURLError drops the URL (which may hold a password) from pgx parse
// errors.
func redactURLError(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return errors.New("cannot parse the connection string (value not shown)")
	}
	return err
}

// interval is d as a PostgreSQL interval, for comparisons made against the
// database clock.
func interval(d time.Duration) pgtype.Interval {
	return pgtype.Interval{Microseconds: d.Microseconds(), Valid: true}
}

func nonNilLabels(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// paged runs a page query whose rows carry count(*) OVER () in total. A
// page past the end has no row to carry the count, so the first row of the
// same query is asked for instead: the filter is written once, in SQL.
func paged[R any](page func(limit, offset int) ([]R, error), limit, offset int, total func(R) int64) ([]R, int64, error) {
	rows, err := page(limit, offset)
	if err != nil {
		return nil, 0, err
	}
	if len(rows) > 0 {
		return rows, total(rows[0]), nil
	}
	if offset == 0 && limit > 0 {
		return rows, 0, nil
	}
	first, err := page(1, 0)
	if err != nil || len(first) == 0 {
		return rows, 0, err
	}
	return rows, total(first[0]), nil
}
