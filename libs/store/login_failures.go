package store

import (
	"context"
	"time"

	"github.com/testum/testum/libs/db"
)

// LoginAttempt records a login attempt as a failure before its key is
// checked, committed at once so that concurrent attempts count each other;
// it returns the attempt's id for LoginRefund.
func (s *Store) LoginAttempt(ctx context.Context, ip, username string) (int64, error) {
	id, err := s.q.LoginAttemptAdd(ctx, db.LoginAttemptAddParams{Now: s.clock(), Ip: ip, Username: username})
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
	NewestPair time.Time // the newest of those before this attempt (the window's start, when none)
	ByIP       int64     // this address, any username
	OldestIP   time.Time
	ByUser     int64     // this username, any address
	At         time.Time // when the window ends: the clock the times above are to be compared with
}

// LoginAttemptCounts counts the failures within the last window around
// attempt self.
func (s *Store) LoginAttemptCounts(ctx context.Context, self int64, ip, username string, window time.Duration) (LoginCounts, error) {
	r, err := s.q.LoginAttemptCounts(ctx, db.LoginAttemptCountsParams{Ip: ip, Username: username, Now: s.clock(),
		Self: self, Within: interval(window)})
	if err != nil {
		return LoginCounts{}, wrap(err, "login failures")
	}
	return LoginCounts{ByPair: r.ByPair, OldestPair: r.OldestPair, NewestPair: r.NewestPair, ByIP: r.ByIp,
		OldestIP: r.OldestIp, ByUser: r.ByUser, At: r.At}, nil
}

// LoginFailuresPrune forgets failures older than age.
func (s *Store) LoginFailuresPrune(ctx context.Context, age time.Duration) error {
	return wrap(s.q.LoginFailuresPrune(ctx, db.LoginFailuresPruneParams{Now: s.clock(), Age: interval(age)}), "login failures")
}
