package accounts

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"
	retry "github.com/sethvargo/go-retry"

	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/testum"
)

// ValidUsername checks a new user's name.
func ValidUsername(s string) error {
	if len(s) < 2 || len(s) > 64 {
		return testum.Invalid("username must be 2 to 64 characters")
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == '@') {
			return testum.Invalid("username may hold letters, digits and - _ . @ only")
		}
	}
	return nil
}

func validRole(r auth.Role) error {
	if !r.Valid() {
		return testum.Invalid("role must be admin, extended_admin or super_admin")
	}
	return nil
}

// newKey generates a master key and its hash.
func newKey() (key, hash string, err error) {
	if key, err = auth.GenerateMasterKey(); err != nil {
		return "", "", err
	}
	if hash, err = auth.HashKey(key); err != nil {
		return "", "", err
	}
	return key, hash, nil
}

// CreateUser creates a user of role (admin when ""), with a generated
// master key that is returned once and stored only as its hash.
func (s *Service) CreateUser(ctx context.Context, by auth.Actor, username string, role auth.Role) (testum.User, string, error) {
	username = strings.TrimSpace(username)
	if err := ValidUsername(username); err != nil {
		return testum.User{}, "", err
	}
	if role == "" {
		role = auth.RoleAdmin
	}
	if err := validRole(role); err != nil {
		return testum.User{}, "", err
	}
	key, hash, err := newKey()
	if err != nil {
		return testum.User{}, "", err
	}
	var createdBy *int64
	if by.UserID != 0 {
		id := by.UserID
		createdBy = &id
	}
	var u testum.User
	err = s.st.InTx(ctx, func(tx Tx) error {
		if u, err = tx.UserCreate(ctx, username, string(role), hash, createdBy); err != nil {
			return err
		}
		return tx.Audit(ctx, by.Entry("user.create", u.Username, map[string]any{"role": u.Role, "id": u.ID}))
	})
	if err != nil {
		return testum.User{}, "", err
	}
	return u, key, nil
}

// guardSuperAdmins guards deleting or demoting a user: never oneself, never
// the last super_admin.
func guardSuperAdmins(ctx context.Context, tx Tx, by auth.Actor, target testum.User, what string) error {
	if by.UserID != 0 && target.ID == by.UserID {
		return testum.Conflict("you cannot %s yourself", what)
	}
	if target.Role != string(auth.RoleSuperAdmin) {
		return nil
	}
	ids, err := tx.SuperAdminsLocked(ctx)
	if err != nil {
		return err
	}
	if len(ids) <= 1 {
		return testum.Conflict("cannot %s the last super_admin", what)
	}
	return nil
}

// DeleteUser deletes user id and ends its sessions.
func (s *Service) DeleteUser(ctx context.Context, by auth.Actor, id int64) (testum.User, error) {
	var u testum.User
	var ended []uuid.UUID
	err := s.st.InTx(ctx, func(tx Tx) error {
		var err error
		if u, err = tx.UserGet(ctx, id); err != nil {
			return err
		}
		if err := guardSuperAdmins(ctx, tx, by, u, "delete"); err != nil {
			return err
		}
		if ended, err = tx.SessionsEndForUser(ctx, id, "user deleted"); err != nil {
			return err
		}
		if err := tx.UserDelete(ctx, id); err != nil {
			return err
		}
		return tx.Audit(ctx, by.Entry("user.delete", u.Username, map[string]any{"id": id, "role": u.Role}))
	})
	s.announce(err, ended)
	return u, err
}

// DeleteUserNamed deletes the user of that name.
func (s *Service) DeleteUserNamed(ctx context.Context, by auth.Actor, username string) (testum.User, error) {
	u, _, err := s.st.UserByName(ctx, username)
	if err != nil {
		return u, err
	}
	return s.DeleteUser(ctx, by, u.ID)
}

// SetRole changes user id's role. A demotion is guarded like a deletion;
// any change ends the user's sessions, so the new rights apply from the
// next login.
func (s *Service) SetRole(ctx context.Context, by auth.Actor, id int64, role auth.Role) (testum.User, error) {
	if err := validRole(role); err != nil {
		return testum.User{}, err
	}
	var out testum.User
	var ended []uuid.UUID
	err := s.st.InTx(ctx, func(tx Tx) error {
		u, err := tx.UserGet(ctx, id)
		if err != nil {
			return err
		}
		if role.Rank() < auth.Role(u.Role).Rank() {
			if err := guardSuperAdmins(ctx, tx, by, u, "demote"); err != nil {
				return err
			}
		}
		if out, err = tx.UserSetRole(ctx, id, string(role)); err != nil {
			return err
		}
		if string(role) != u.Role {
			if ended, err = tx.SessionsEndForUser(ctx, id, "role changed"); err != nil {
				return err
			}
		}
		return tx.Audit(ctx, by.Entry("user.role", u.Username, map[string]any{"from": u.Role, "to": string(role)}))
	})
	s.announce(err, ended)
	return out, err
}

// ResetKey gives user id a new generated master key, returned once; the
// user's sessions end.
func (s *Service) ResetKey(ctx context.Context, by auth.Actor, id int64) (testum.User, string, error) {
	key, hash, err := newKey()
	if err != nil {
		return testum.User{}, "", err
	}
	var u testum.User
	var ended []uuid.UUID
	err = s.st.InTx(ctx, func(tx Tx) error {
		if u, err = tx.UserGet(ctx, id); err != nil {
			return err
		}
		if err := tx.UserSetKey(ctx, id, hash); err != nil {
			return err
		}
		if ended, err = tx.SessionsEndForUser(ctx, id, "master key reset"); err != nil {
			return err
		}
		return tx.Audit(ctx, by.Entry("user.reset_key", u.Username, map[string]any{"id": id}))
	})
	s.announce(err, ended)
	if err != nil {
		return testum.User{}, "", err
	}
	return u, key, nil
}

// ResetKeyNamed resets the key of the user of that name.
func (s *Service) ResetKeyNamed(ctx context.Context, by auth.Actor, username string) (testum.User, string, error) {
	u, _, err := s.st.UserByName(ctx, username)
	if err != nil {
		return u, "", err
	}
	return s.ResetKey(ctx, by, u.ID)
}

// bootstrapTries bounds how long BootstrapAdmin waits for another process
// that bootstraps at the same time.
const bootstrapTries = 50

// errBootstrapBusy: another process holds the bootstrap job.
var errBootstrapBusy = errors.New("bootstrap job busy")

// BootstrapAdmin creates the first super_admin when there is no user at
// all: from username/password when given, else with a generated key, which
// it returns (to be printed once). Concurrent processes create one.
func (s *Service) BootstrapAdmin(ctx context.Context, username, password string) (created bool, generated string, err error) {
	if username == "" {
		username = DefaultAdminName
	}
	if password != "" {
		if err := auth.CheckKeyShape(password); err != nil {
			return false, "", testum.Invalid("ADMIN_PASSWORD: %v", err)
		}
	}
	// Another process holding the job is let finish: try again shortly.
	b := retry.WithMaxRetries(bootstrapTries-1, retry.WithJitterPercent(20, retry.NewConstant(100*time.Millisecond)))
	err = retry.Do(ctx, b, func(ctx context.Context) error {
		ran, err := s.st.Once(ctx, "bootstrap-admin", func(tx Tx) error {
			n, err := tx.UserCount(ctx)
			if err != nil || n > 0 {
				return err
			}
			key := password
			if key == "" {
				if key, err = auth.GenerateMasterKey(); err != nil {
					return err
				}
				generated = key
			}
			hash, err := auth.HashKey(key)
			if err != nil {
				return err
			}
			u, err := tx.UserCreate(ctx, username, string(auth.RoleSuperAdmin), hash, nil)
			if err != nil {
				return err
			}
			created = true
			return tx.Audit(ctx, testum.AuditEntry{Actor: "testum", Action: "user.create", Target: u.Username,
				Details: map[string]any{"role": u.Role, "bootstrap": true}, Outcome: testum.AuditOK})
		})
		if err != nil {
			generated = ""
			return err
		}
		if !ran {
			return retry.RetryableError(errBootstrapBusy)
		}
		return nil
	})
	if errors.Is(err, errBootstrapBusy) {
		return false, "", testum.Errorf(testum.CodeUnavailable, "could not bootstrap the first user")
	}
	return created, generated, err
}
