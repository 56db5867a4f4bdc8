package store

import (
	"context"

	"github.com/testum/testum/libs/db"
	"github.com/testum/testum/libs/testum"
)

func userOf(u db.User) testum.User {
	return testum.User{ID: u.ID, Username: u.Username, Role: u.Role, CreatedAt: u.CreatedAt,
		KeyChangedAt: u.KeyChangedAt, LastLoginAt: u.LastLoginAt}
}

// UserCreate adds a user with the bcrypt hash of its master key.
func (s *Store) UserCreate(ctx context.Context, username, role, keyHash string, createdBy *int64) (testum.User, error) {
	u, err := s.q.UserCreate(ctx, db.UserCreateParams{Username: username, Role: role, KeyHash: keyHash,
		CreatedBy: createdBy, Now: s.clock()})
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

// UserList pages through users by name and counts them all.
func (s *Store) UserList(ctx context.Context, limit, offset int) ([]testum.User, int64, error) {
	page := func(limit, offset int) ([]db.UserListRow, error) {
		return s.q.UserList(ctx, db.UserListParams{Lim: int32(limit), Off: int32(offset)})
	}
	rows, total, err := paged(page, limit, offset, func(r db.UserListRow) int64 { return r.Total })
	if err != nil {
		return nil, 0, wrap(err, "users")
	}
	out := make([]testum.User, 0, len(rows))
	for _, r := range rows {
		out = append(out, userOf(r.User))
	}
	return out, total, nil
}

// SuperAdminsLocked locks and returns the ids of every super_admin, so that
// a deletion or demotion can check that another one remains. It is meant
// for a transaction.
func (s *Store) SuperAdminsLocked(ctx context.Context) ([]int64, error) {
	ids, err := s.q.UserLockSuperAdmins(ctx)
	return ids, wrap(err, "users")
}

// UserDelete deletes a user; its sessions go with it.
func (s *Store) UserDelete(ctx context.Context, id int64) error {
	n, err := s.q.UserDelete(ctx, id)
	if err != nil {
		return wrap(err, "user")
	}
	if n == 0 {
		return testum.NotFound("user not found")
	}
	return nil
}

// UserSetRole changes a user's role.
func (s *Store) UserSetRole(ctx context.Context, id int64, role string) (testum.User, error) {
	u, err := s.q.UserSetRole(ctx, db.UserSetRoleParams{ID: id, Role: role, Now: s.clock()})
	if err != nil {
		return testum.User{}, wrap(err, "user")
	}
	return userOf(u), nil
}

// UserSetKey replaces a user's master key hash.
func (s *Store) UserSetKey(ctx context.Context, id int64, keyHash string) error {
	n, err := s.q.UserSetKey(ctx, db.UserSetKeyParams{ID: id, KeyHash: keyHash, Now: s.clock()})
	if err != nil {
		return wrap(err, "user")
	}
	if n == 0 {
		return testum.NotFound("user not found")
	}
	return nil
}

// UserTouchLogin records a successful login.
func (s *Store) UserTouchLogin(ctx context.Context, id int64) error {
	return wrap(s.q.UserTouchLogin(ctx, db.UserTouchLoginParams{ID: id, Now: s.clock()}), "user")
}
