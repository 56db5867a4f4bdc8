package accounts

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// fakeStore keeps users, keys and sessions in memory; it is its own Tx.
type fakeStore struct {
	users    map[int64]testum.User
	hashes   map[int64]string
	sessions map[uuid.UUID]int64 // active sessions and their users
	audit    []testum.AuditEntry
	nextID   int64
	now      time.Time // the store's clock, which sessions expire by
}

func newFakeStore() *fakeStore {
	return &fakeStore{users: map[int64]testum.User{}, hashes: map[int64]string{}, sessions: map[uuid.UUID]int64{}}
}

func (f *fakeStore) add(name string, role auth.Role) testum.User {
	f.nextID++
	u := testum.User{ID: f.nextID, Username: name, Role: string(role)}
	f.users[u.ID] = u
	s := uuid.New()
	f.sessions[s] = u.ID
	return u
}

func (f *fakeStore) sessionsOf(id int64) int {
	n := 0
	for _, u := range f.sessions {
		if u == id {
			n++
		}
	}
	return n
}

func (f *fakeStore) InTx(_ context.Context, fn func(tx Tx) error) error { return fn(f) }

func (f *fakeStore) Once(_ context.Context, _ string, fn func(tx Tx) error) (bool, error) {
	return true, fn(f)
}

func (f *fakeStore) UserByName(_ context.Context, name string) (testum.User, string, error) {
	for _, u := range f.users {
		if u.Username == name {
			return u, f.hashes[u.ID], nil
		}
	}
	return testum.User{}, "", testum.NotFound("user %s not found", name)
}

func (f *fakeStore) UserKeyHash(_ context.Context, id int64) (string, error) {
	return f.hashes[id], nil
}

func (f *fakeStore) Audit(_ context.Context, e testum.AuditEntry) error {
	f.audit = append(f.audit, e)
	return nil
}

func (f *fakeStore) UserCount(context.Context) (int64, error) { return int64(len(f.users)), nil }

func (f *fakeStore) UserCreate(_ context.Context, name, role, hash string, _ *int64) (testum.User, error) {
	if _, _, err := f.UserByName(context.Background(), name); err == nil {
		return testum.User{}, testum.Conflict("user %s exists", name)
	}
	u := f.add(name, auth.Role(role))
	delete(f.sessions, func() uuid.UUID {
		for s, id := range f.sessions {
			if id == u.ID {
				return s
			}
		}
		return uuid.Nil
	}())
	f.hashes[u.ID] = hash
	return u, nil
}

func (f *fakeStore) UserGet(_ context.Context, id int64) (testum.User, error) {
	u, ok := f.users[id]
	if !ok {
		return u, testum.NotFound("user %d not found", id)
	}
	return u, nil
}

func (f *fakeStore) UserSetRole(_ context.Context, id int64, role string) (testum.User, error) {
	u := f.users[id]
	u.Role = role
	f.users[id] = u
	return u, nil
}

func (f *fakeStore) UserSetKey(_ context.Context, id int64, hash string) error {
	f.hashes[id] = hash
	return nil
}

func (f *fakeStore) UserDelete(_ context.Context, id int64) error {
	delete(f.users, id)
	return nil
}

func (f *fakeStore) UserTouchLogin(context.Context, int64) error { return nil }

func (f *fakeStore) SuperAdminsLocked(context.Context) ([]int64, error) {
	var ids []int64
	for _, u := range f.users {
		if u.Role == string(auth.RoleSuperAdmin) {
			ids = append(ids, u.ID)
		}
	}
	return ids, nil
}

func (f *fakeStore) SessionCreate(_ context.Context, ns store.NewSession) (time.Time, error) {
	f.sessions[ns.ID] = ns.UserID
	return f.now.Add(ns.Lifetime), nil
}

func (f *fakeStore) SessionGet(_ context.Context, id uuid.UUID) (testum.Session, error) {
	u, ok := f.sessions[id]
	if !ok {
		return testum.Session{}, testum.NotFound("session not found")
	}
	return testum.Session{ID: id.String(), UserID: u, Username: f.users[u].Username}, nil
}

func (f *fakeStore) SessionEnd(_ context.Context, id uuid.UUID, _ string) (bool, error) {
	_, ok := f.sessions[id]
	delete(f.sessions, id)
	return ok, nil
}

func (f *fakeStore) SessionsEndForUser(_ context.Context, user int64, _ string) ([]uuid.UUID, error) {
	var ended []uuid.UUID
	for s, u := range f.sessions {
		if u == user {
			ended = append(ended, s)
			delete(f.sessions, s)
		}
	}
	return ended, nil
}

func (f *fakeStore) SessionsExpire(context.Context, time.Duration) ([]uuid.UUID, error) {
	return nil, nil
}

func (f *fakeStore) LoginFailuresPrune(context.Context, time.Duration) error { return nil }

func newService(t *testing.T, st Store) *Service {
	t.Helper()
	tokens, err := auth.NewTokens(strings.Repeat("k", auth.MinSecretKeyLen), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Tokens: tokens}, st)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func actorOf(u testum.User) auth.Actor {
	return auth.Actor{UserID: u.ID, Username: u.Username, Role: auth.Role(u.Role), IP: "192.0.2.9"}
}

// console is the machine's operator, as `testum user` acts.
var console = auth.Actor{Username: "console"}

func TestLastSuperAdminGuard(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		supers   int // super_admins besides the actor
		by       string
		target   string
		op       string // delete, demote
		wantErr  string
		wantDone bool
	}{
		{name: "delete oneself", by: "root", target: "root", op: "delete", supers: 1, wantErr: "you cannot delete yourself"},
		{name: "demote oneself", by: "root", target: "root", op: "demote", supers: 1, wantErr: "you cannot demote yourself"},
		{name: "delete another super_admin", by: "root", target: "super1", op: "delete", supers: 1, wantDone: true},
		{name: "delete an admin", by: "root", target: "ops", op: "delete", wantDone: true},
		{name: "console deletes the last super_admin", by: "console", target: "root", op: "delete", wantErr: "cannot delete the last super_admin"},
		{name: "console demotes the last super_admin", by: "console", target: "root", op: "demote", wantErr: "cannot demote the last super_admin"},
		{name: "console deletes one of two", by: "console", target: "root", op: "delete", supers: 1, wantDone: true},
		{name: "promote is not guarded", by: "console", target: "ops", op: "promote", wantDone: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newFakeStore()
			users := map[string]testum.User{"root": st.add("root", auth.RoleSuperAdmin), "ops": st.add("ops", auth.RoleAdmin)}
			for i := range tc.supers {
				n := "super" + string(rune('1'+i))
				users[n] = st.add(n, auth.RoleSuperAdmin)
			}
			by := console
			if tc.by != "console" {
				by = actorOf(users[tc.by])
			}
			target := users[tc.target]
			s := newService(t, st)
			var err error
			switch tc.op {
			case "delete":
				_, err = s.DeleteUser(ctx, by, target.ID)
			case "demote":
				_, err = s.SetRole(ctx, by, target.ID, auth.RoleExtendedAdmin)
			case "promote":
				_, err = s.SetRole(ctx, by, target.ID, auth.RoleSuperAdmin)
			}
			if tc.wantErr != "" {
				if testum.CodeOf(err) != testum.CodeConflict || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want conflict %q", err, tc.wantErr)
				}
				if len(st.audit) != 0 || st.sessionsOf(target.ID) != 1 {
					t.Errorf("a refused change left audit %v and %d sessions", st.audit, st.sessionsOf(target.ID))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.sessionsOf(target.ID) != 0 {
				t.Errorf("the user's sessions did not end")
			}
			if len(st.audit) != 1 || st.audit[0].Actor != by.Username {
				t.Errorf("audit: %+v", st.audit)
			}
		})
	}
}

func TestCreateUser(t *testing.T) {
	ctx := context.Background()
	st := newFakeStore()
	s := newService(t, st)
	root := actorOf(st.add("root", auth.RoleSuperAdmin))
	for _, tc := range []struct {
		name, username string
		role           auth.Role
		wantErr        string
		wantRole       auth.Role
	}{
		{name: "default role", username: " ops ", wantRole: auth.RoleAdmin},
		{name: "given role", username: "lead@example", role: auth.RoleExtendedAdmin, wantRole: auth.RoleExtendedAdmin},
		{name: "short name", username: "a", wantErr: "2 to 64 characters"},
		{name: "bad characters", username: "a b", wantErr: "letters, digits"},
		{name: "unknown role", username: "x1", role: "root", wantErr: "role must be admin, extended_admin or super_admin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, key, err := s.CreateUser(ctx, root, tc.username, tc.role)
			if tc.wantErr != "" {
				if testum.CodeOf(err) != testum.CodeInvalid || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want invalid %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.Username != strings.TrimSpace(tc.username) || u.Role != string(tc.wantRole) {
				t.Errorf("user %+v", u)
			}
			if !auth.CheckKey(st.hashes[u.ID], key) || strings.Contains(st.hashes[u.ID], key) {
				t.Errorf("the stored hash is not the key's")
			}
			last := st.audit[len(st.audit)-1]
			if last.Action != "user.create" || last.Target != u.Username || *last.ActorID != root.UserID {
				t.Errorf("audit %+v", last)
			}
		})
	}
}

func TestResetAndRotateKey(t *testing.T) {
	ctx := context.Background()
	st := newFakeStore()
	s := newService(t, st)
	ops := st.add("ops", auth.RoleAdmin)

	_, key, err := s.ResetKeyNamed(ctx, console, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if !auth.CheckKey(st.hashes[ops.ID], key) || st.sessionsOf(ops.ID) != 0 {
		t.Fatalf("reset: key not set or sessions left")
	}
	if _, _, err := s.ResetKeyNamed(ctx, console, "nobody"); testum.CodeOf(err) != testum.CodeNotFound {
		t.Fatalf("reset of nobody: %v", err)
	}

	u, iss, err := s.Login(ctx, Client{IP: "192.0.2.9"}, "ops", key, uuid.Nil)
	if err != nil || u.ID != ops.ID || st.sessionsOf(ops.ID) != 1 {
		t.Fatalf("login: %v", err)
	}
	if _, _, err := s.Login(ctx, Client{}, "ops", "wrong", uuid.Nil); testum.CodeOf(err) != testum.CodeUnauthorized {
		t.Fatalf("login with a wrong key: %v", err)
	}
	if last := st.audit[len(st.audit)-1]; last.Outcome != "failed" || last.ActorID != nil {
		t.Errorf("failed login audit: %+v", last)
	}

	by := actorOf(ops)
	if _, _, err := s.RotateKey(ctx, by, Client{}, "wrong"); testum.CodeOf(err) != testum.CodeForbidden {
		t.Fatalf("rotate with a wrong key: %v", err)
	}
	newKey, iss2, err := s.RotateKey(ctx, by, Client{}, key)
	if err != nil {
		t.Fatal(err)
	}
	if newKey == key || !auth.CheckKey(st.hashes[ops.ID], newKey) {
		t.Errorf("the key did not change")
	}
	if _, old := st.sessions[iss.SessionID]; old || st.sessions[iss2.SessionID] != ops.ID || st.sessionsOf(ops.ID) != 1 {
		t.Errorf("after a rotation only the new session lives: %v", st.sessions)
	}
}

// A session expires by the store's clock, which checks it, not by the
// clock of the process that opened it; the client is told that time.
func TestSessionExpiresByTheStoreClock(t *testing.T) {
	ctx := context.Background()
	st := newFakeStore()
	st.now = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s := newService(t, st)
	ops := st.add("ops", auth.RoleAdmin)
	_, key, err := s.ResetKeyNamed(ctx, console, "ops")
	if err != nil {
		t.Fatal(err)
	}
	_, iss, err := s.Login(ctx, Client{IP: "192.0.2.9"}, "ops", key, uuid.Nil)
	if err != nil || st.sessionsOf(ops.ID) != 1 {
		t.Fatalf("login: %v", err)
	}
	if want := st.now.Add(s.cfg.SessionMax); !iss.ExpiresAt.Equal(want) {
		t.Errorf("the session expires at %v, want %v (the store's clock plus the lifetime)", iss.ExpiresAt, want)
	}
}

func TestBootstrapAdmin(t *testing.T) {
	ctx := context.Background()
	st := newFakeStore()
	s := newService(t, st)
	if _, _, err := s.BootstrapAdmin(ctx, "", "short"); testum.CodeOf(err) != testum.CodeInvalid {
		t.Fatalf("a short ADMIN_PASSWORD: %v", err)
	}
	created, key, err := s.BootstrapAdmin(ctx, "", "")
	if err != nil || !created || key == "" {
		t.Fatalf("first start: %v %v %q", created, err, key)
	}
	u, hash, _ := st.UserByName(ctx, "admin")
	if u.Role != string(auth.RoleSuperAdmin) || !auth.CheckKey(hash, key) {
		t.Errorf("bootstrap user %+v", u)
	}
	created, key, err = s.BootstrapAdmin(ctx, "other", "")
	if err != nil || created || key != "" {
		t.Errorf("second start: %v %v %q", created, err, key)
	}
	if got := slices.IndexFunc(st.audit, func(e testum.AuditEntry) bool { return e.Actor == "testum" }); got < 0 {
		t.Errorf("no bootstrap audit entry: %+v", st.audit)
	}
}

// busyStore is a fakeStore whose Once job is held by another process for
// the first busy calls; onBusy runs at each of them.
type busyStore struct {
	*fakeStore
	busy   int
	calls  int
	onBusy func()
}

func (b *busyStore) Once(ctx context.Context, job string, fn func(tx Tx) error) (bool, error) {
	if b.calls++; b.calls <= b.busy {
		if b.onBusy != nil {
			b.onBusy()
		}
		return false, nil
	}
	return b.fakeStore.Once(ctx, job, fn)
}

// TestBootstrapAdminWaitsForAnotherProcess: while another process holds the
// bootstrap job, BootstrapAdmin tries again; it stops when ctx ends.
func TestBootstrapAdminWaitsForAnotherProcess(t *testing.T) {
	t.Run("tries again", func(t *testing.T) {
		st := &busyStore{fakeStore: newFakeStore(), busy: 2}
		created, key, err := newService(t, st).BootstrapAdmin(context.Background(), "", "")
		if err != nil || !created || key == "" || st.calls != 3 {
			t.Fatalf("created %v, key %q, err %v after %d tries; want created on the 3rd", created, key, err, st.calls)
		}
	})
	t.Run("stops with ctx", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		st := &busyStore{fakeStore: newFakeStore(), busy: 1 << 30}
		st.onBusy = func() {
			if st.calls == 2 {
				cancel()
			}
		}
		created, _, err := newService(t, st).BootstrapAdmin(ctx, "", "")
		if created || !errors.Is(err, context.Canceled) || st.calls != 2 {
			t.Fatalf("created %v, err %v after %d tries; want context.Canceled after 2", created, err, st.calls)
		}
	})
}
