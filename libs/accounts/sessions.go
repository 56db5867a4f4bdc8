package accounts

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// Client is where a login comes from, as its session records it.
type Client struct {
	IP        string
	UserAgent string
}

// Login checks a user's master key and opens a session. replacing, when
// not uuid.Nil, is a session the client already holds: a login always
// starts a new one, so whoever planted or held the old token loses it. A
// wrong name or key is audited and answered unauthorized.
func (s *Service) Login(ctx context.Context, from Client, username, password string, replacing uuid.UUID) (testum.User, auth.Issued, error) {
	u, hash, err := s.st.UserByName(ctx, username)
	if err != nil && !store.IsNotFound(err) {
		return testum.User{}, auth.Issued{}, err
	}
	if !auth.CheckKey(hash, password) {
		s.auditAlone(ctx, failed(auth.Actor{IP: from.IP}.Entry("auth.login", username, map[string]any{"reason": "wrong username or master key"})))
		return testum.User{}, auth.Issued{}, testum.Errorf(testum.CodeUnauthorized, "wrong username or master key")
	}
	var ended []uuid.UUID
	iss, err := s.openSession(ctx, u.ID, from, func(tx Tx) error {
		if replacing != uuid.Nil {
			ended = []uuid.UUID{replacing}
			if _, err := tx.SessionEnd(ctx, replacing, "replaced by a new login"); err != nil {
				return err
			}
		}
		if err := tx.UserTouchLogin(ctx, u.ID); err != nil {
			return err
		}
		by := auth.Actor{UserID: u.ID, Username: u.Username, IP: from.IP}
		return tx.Audit(ctx, by.Entry("auth.login", u.Username, nil))
	})
	s.announce(err, ended)
	if err != nil {
		return testum.User{}, auth.Issued{}, err
	}
	return u, iss, nil
}

// openSession issues a token and stores its session after whatever fn
// writes, in one transaction.
func (s *Service) openSession(ctx context.Context, userID int64, from Client, fn func(tx Tx) error) (auth.Issued, error) {
	if s.cfg.Tokens == nil {
		return auth.Issued{}, testum.Errorf(testum.CodeInternal, "accounts: no token issuer configured")
	}
	// The token's exp, on this process's clock, is only a backstop: the
	// session row's expiry, on the store's clock, is what every request is
	// checked against, and what the client is told.
	iss, err := s.cfg.Tokens.Issue(userID, s.cfg.Now().Add(s.cfg.SessionMax))
	if err != nil {
		return auth.Issued{}, err
	}
	err = s.st.InTx(ctx, func(tx Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		expires, err := tx.SessionCreate(ctx, store.NewSession{ID: iss.SessionID, UserID: userID, TokenHash: iss.TokenHash,
			Lifetime: s.cfg.SessionMax, IP: from.IP, UserAgent: from.UserAgent})
		iss.ExpiresAt = expires
		return err
	})
	if err != nil {
		return auth.Issued{}, err
	}
	return iss, nil
}

// Logout ends the actor's session.
func (s *Service) Logout(ctx context.Context, by auth.Actor, session uuid.UUID) error {
	err := s.st.InTx(ctx, func(tx Tx) error {
		if _, err := tx.SessionEnd(ctx, session, "logout"); err != nil {
			return err
		}
		return tx.Audit(ctx, by.Entry("auth.logout", by.Username, nil))
	})
	s.announce(err, []uuid.UUID{session})
	return err
}

// RotateKey replaces the actor's own master key with a new generated one,
// returned once; current, the key in use, proves it is the user at the
// keyboard. Every session of the user ends and a new one opens.
func (s *Service) RotateKey(ctx context.Context, by auth.Actor, from Client, current string) (string, auth.Issued, error) {
	hash, err := s.st.UserKeyHash(ctx, by.UserID)
	if err != nil {
		return "", auth.Issued{}, err
	}
	if !auth.CheckKey(hash, current) {
		s.auditAlone(ctx, failed(by.Entry("user.master_key", by.Username, map[string]any{"reason": "wrong current master key"})))
		return "", auth.Issued{}, testum.Errorf(testum.CodeForbidden, "the current master key is wrong")
	}
	key, newHash, err := newKey()
	if err != nil {
		return "", auth.Issued{}, err
	}
	var ended []uuid.UUID
	iss, err := s.openSession(ctx, by.UserID, from, func(tx Tx) error {
		if err := tx.UserSetKey(ctx, by.UserID, newHash); err != nil {
			return err
		}
		ids, err := tx.SessionsEndForUser(ctx, by.UserID, "master key rotated")
		if err != nil {
			return err
		}
		ended = ids
		return tx.Audit(ctx, by.Entry("user.master_key", by.Username, map[string]any{"sessions_ended": len(ids)}))
	})
	s.announce(err, ended)
	if err != nil {
		return "", auth.Issued{}, err
	}
	return key, iss, nil
}

// EndSession ends another session (a super_admin's action).
func (s *Service) EndSession(ctx context.Context, by auth.Actor, id uuid.UUID) error {
	err := s.st.InTx(ctx, func(tx Tx) error {
		sess, err := tx.SessionGet(ctx, id)
		if err != nil {
			return err
		}
		if _, err := tx.SessionEnd(ctx, id, "ended by "+by.Username); err != nil {
			return err
		}
		return tx.Audit(ctx, by.Entry("session.end", sess.Username, map[string]any{"session_id": id.String()}))
	})
	s.announce(err, []uuid.UUID{id})
	return err
}

// failedLoginsKept is how long failed logins are remembered for the rate
// limits.
const failedLoginsKept = 24 * time.Hour

// SweepSessions ends expired sessions and forgets old failed logins, once
// across every process per call; it reports whether this one did it.
func (s *Service) SweepSessions(ctx context.Context) (bool, error) {
	var ended []uuid.UUID
	ran, err := s.st.Once(ctx, "session-sweep", func(tx Tx) error {
		ids, err := tx.SessionsExpire(ctx, s.cfg.SessionIdle)
		if err != nil {
			return err
		}
		ended = ids
		return tx.LoginFailuresPrune(ctx, failedLoginsKept)
	})
	if err != nil {
		return ran, err
	}
	if len(ended) > 0 {
		s.log.Info("sessions expired", "count", len(ended))
	}
	s.announce(nil, ended)
	return ran, nil
}

// announce tells cfg.Ended which sessions a committed transaction (err
// nil) ended.
func (s *Service) announce(err error, ended []uuid.UUID) {
	if err == nil && len(ended) > 0 && s.cfg.Ended != nil {
		s.cfg.Ended(ended)
	}
}
