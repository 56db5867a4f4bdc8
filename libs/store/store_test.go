package store_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testenv"
	"github.com/testum/testum/libs/testum"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

// fakeSealer seals by hex-encoding the plaintext under its key id and the
// associated data, so that a test can see what a ciphertext is bound to and
// that no plaintext reaches a row.
type fakeSealer struct {
	mu    sync.Mutex
	keyID string
}

func (f *fakeSealer) CurrentKeyID() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keyID
}

func (f *fakeSealer) Seal(plaintext, ad []byte) ([]byte, error) {
	return []byte(f.CurrentKeyID() + ":" + hex.EncodeToString(ad) + ":" + hex.EncodeToString(plaintext)), nil
}

func (f *fakeSealer) Open(ciphertext, ad []byte) ([]byte, error) {
	parts := strings.Split(string(ciphertext), ":")
	if len(parts) != 3 {
		return nil, errors.New("not a fake ciphertext")
	}
	if parts[1] != hex.EncodeToString(ad) {
		return nil, errors.New("associated data mismatch")
	}
	return hex.DecodeString(parts[2])
}

// clock is a settable clock for the session and login times.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// open migrates a fresh database and opens a store on it; cfg adjusts the
// store's config.
func open(t *testing.T, cfg func(*store.Config)) *store.Store {
	t.Helper()
	ctx := context.Background()
	url := testenv.Postgres(t)
	if err := store.Migrate(ctx, url, nil); err != nil {
		t.Fatal(err)
	}
	c := store.Config{URL: url, MaxConns: 4, Sealer: &fakeSealer{keyID: "k1"}}
	if cfg != nil {
		cfg(&c)
	}
	st, err := store.Open(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// exec runs SQL on the pool, for setting up what no store method does
// (moving a row back in time).
func exec(t *testing.T, st *store.Store, sql string, args ...any) {
	t.Helper()
	if _, err := st.Pool().Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func createUser(t *testing.T, st *store.Store, name string) testum.User {
	t.Helper()
	var u testum.User
	err := st.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		u, err = tx.UserCreate(context.Background(), name, "admin", "hash-of-"+name, nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func createPlatform(t *testing.T, st *store.Store, name string, labels map[string]string) testum.Platform {
	t.Helper()
	var p testum.Platform
	err := st.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		p, err = tx.PlatformCreate(context.Background(), store.NewPlatform{Name: name, Host: "127.0.0.1", Port: 22,
			Username: "u", AuthMethod: testum.AuthPassword, Labels: labels,
			Secret: &store.NewSecret{Kind: testum.AuthPassword, Secret: []byte("pw-" + name)}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUsersAndSessions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := &clock{t: time.Now().UTC().Truncate(time.Microsecond)}
	st := open(t, func(c *store.Config) { c.Now = clk.Now })

	alice := createUser(t, st, "Alice")
	createUser(t, st, "bob")
	err := st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.UserCreate(ctx, "alice", "admin", "h", nil)
		return err
	})
	if testum.CodeOf(err) != testum.CodeConflict {
		t.Fatalf("a second alice: %v, want a conflict", err)
	}
	u, hash, err := st.UserByName(ctx, "ALICE")
	if err != nil || u.ID != alice.ID || hash != "hash-of-Alice" {
		t.Fatalf("UserByName: %+v %q %v", u, hash, err)
	}
	if !u.CreatedAt.Equal(clk.Now()) {
		t.Fatalf("created at %s, want the injected clock's %s", u.CreatedAt, clk.Now())
	}
	if n, err := st.UserCount(ctx); err != nil || n != 2 {
		t.Fatalf("UserCount: %d %v", n, err)
	}

	const idle = 15 * time.Minute
	sid, token := uuid.New(), []byte("token-hash")
	err = st.InTx(ctx, func(tx *store.Tx) error {
		expires, err := tx.SessionCreate(ctx, store.NewSession{ID: sid, UserID: alice.ID, TokenHash: token,
			Lifetime: 2 * time.Hour, IP: "127.0.0.1"})
		if err == nil && !expires.Equal(clk.Now().Add(2*time.Hour)) {
			t.Errorf("expires at %s, want the injected clock's %s plus the lifetime", expires, clk.Now())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.SessionTouch(ctx, sid, []byte("another hash"), idle); !store.IsNotFound(err) {
		t.Fatalf("touch with a wrong token hash: %v", err)
	}
	for range 5 { // activity keeps it alive past the idle limit
		clk.Advance(idle - time.Second)
		s, err := st.SessionTouch(ctx, sid, token, idle)
		if err != nil || s.Username != "Alice" || !s.Active {
			t.Fatalf("touch: %+v %v", s, err)
		}
	}
	clk.Advance(idle + time.Second)
	if _, err := st.SessionCheck(ctx, sid, idle); !store.IsNotFound(err) {
		t.Fatalf("check of an idle session: %v", err)
	}
	list, total, err := st.SessionList(ctx, false, idle, 10, 0)
	if err != nil || total != 1 || len(list) != 1 || list[0].Active {
		t.Fatalf("all sessions: %d %+v %v", total, list, err)
	}
	if _, total, err := st.SessionList(ctx, true, idle, 10, 0); err != nil || total != 0 {
		t.Fatalf("active sessions: %d %v", total, err)
	}
	ended, err := st.SessionsExpire(ctx, idle)
	if err != nil || len(ended) != 1 || ended[0] != sid {
		t.Fatalf("expire: %v %v", ended, err)
	}
	if s, err := st.SessionGet(ctx, sid); err != nil || s.Active {
		t.Fatalf("expired session: %+v %v", s, err)
	}
}

// Each paged list's total counts every row its filter matches, whatever
// the page, also a page past the end.
func TestPlatformPagesCountEveryMatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := open(t, nil)
	var first testum.Platform
	for i := range 7 {
		env := "prod"
		if i%3 == 2 {
			env = "test"
		}
		p := createPlatform(t, st, fmt.Sprintf("web%02d", i), map[string]string{"env": env})
		if i == 0 {
			first = p
		}
	}
	if err := st.PlatformRecordContact(ctx, first.ID, "reachable", ""); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		f             store.PlatformFilter
		limit, offset int
		want          []string
		total         int
	}{
		{"all, first page", store.PlatformFilter{}, 3, 0, []string{"web00", "web01", "web02"}, 7},
		{"all, last page", store.PlatformFilter{}, 3, 6, []string{"web06"}, 7},
		{"all, past the end", store.PlatformFilter{}, 3, 9, nil, 7},
		{"label", store.PlatformFilter{Labels: map[string]string{"env": "prod"}}, 2, 2, []string{"web03", "web04"}, 5},
		{"label, past the end", store.PlatformFilter{Labels: map[string]string{"env": "test"}}, 2, 4, nil, 2},
		{"name", store.PlatformFilter{Name: "B0"}, 100, 0, []string{"web00", "web01", "web02", "web03", "web04", "web05", "web06"}, 7},
		{"name and label", store.PlatformFilter{Name: "web0", Labels: map[string]string{"env": "test"}}, 1, 1, []string{"web05"}, 2},
		{"state", store.PlatformFilter{State: "reachable"}, 10, 0, []string{"web00"}, 1},
		{"nothing matches", store.PlatformFilter{Name: "db"}, 10, 0, nil, 0},
		{"nothing matches, past the end", store.PlatformFilter{Name: "db"}, 10, 20, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps, total, err := st.PlatformSearch(ctx, tc.f, tc.limit, tc.offset)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range ps {
				names = append(names, p.Name)
			}
			if fmt.Sprint(names) != fmt.Sprint(tc.want) || total != tc.total {
				t.Fatalf("got %v of %d, want %v of %d", names, total, tc.want, tc.total)
			}
		})
	}
	if ps, total, err := st.PlatformList(ctx, 2, 100); err != nil || len(ps) != 0 || total != 7 {
		t.Fatalf("PlatformList past the end: %d of %d, %v", len(ps), total, err)
	}
	if cs, total, err := st.CredentialList(ctx, 10, 0); err != nil || len(cs) != 0 || total != 0 {
		t.Fatalf("inline secrets are no named credentials: %d of %d, %v", len(cs), total, err)
	}
}

func newRun(t *testing.T, st *store.Store, ps ...testum.Platform) testum.Run {
	t.Helper()
	nr := store.NewRun{ID: uuid.New(), Command: "true", CreatedByName: "alice",
		Spec: testum.RunSpec{Command: "true", TimeoutSeconds: 60, Parallelism: 10, SecretEnv: map[string]string{"TOKEN": "s3cret"}}}
	for _, p := range ps {
		nr.Hosts = append(nr.Hosts, store.NewRunHost{PlatformID: p.ID, Name: p.Name, Address: p.Host})
	}
	var run testum.Run
	err := st.InTx(context.Background(), func(tx *store.Tx) error {
		var err error
		run, err = tx.RunCreate(context.Background(), nr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return run
}

func TestRunTransitions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := open(t, nil)
	p1, p2 := createPlatform(t, st, "a", nil), createPlatform(t, st, "b", nil)
	run := newRun(t, st, p1, p2)
	if run.State != testum.RunQueued || run.HostCount != 2 {
		t.Fatalf("new run: %+v", run)
	}
	if env, err := st.RunSecretEnv(ctx, run.ID); err != nil || env["TOKEN"] != "s3cret" {
		t.Fatalf("secret env: %v %v", env, err)
	}
	for _, ex := range []string{"ex1", "ex2"} {
		if err := st.ExecutorRegister(ctx, ex, "host", 1, 4); err != nil {
			t.Fatal(err)
		}
	}
	const dead = 30 * time.Second
	got, ok, err := st.RunCoordinate(ctx, run.ID, "ex1", dead)
	if err != nil || !ok || got.State != testum.RunRunning || got.CoordinatorID != "ex1" {
		t.Fatalf("coordinate: %+v %v %v", got, ok, err)
	}
	if _, ok, err := st.RunCoordinate(ctx, run.ID, "ex2", dead); err != nil || ok {
		t.Fatalf("a second coordinator while the first is alive: %v %v", ok, err)
	}

	rel, err := st.RunHostsRelease(ctx, run.ID, "ex1", 5)
	if err != nil || len(rel) != 2 || rel[0].Attempt != 0 {
		t.Fatalf("release: %+v %v", rel, err)
	}
	if more, err := st.RunHostsRelease(ctx, run.ID, "ex1", 5); err != nil || len(more) != 0 {
		t.Fatalf("release again: %+v %v", more, err)
	}
	if _, ok, err := st.RunHostClaim(ctx, run.ID, 0, 2, "ex1"); err != nil || ok {
		t.Fatalf("claim of a later attempt: %v %v", ok, err)
	}
	h, ok, err := st.RunHostClaim(ctx, run.ID, 0, 1, "ex1")
	if err != nil || !ok || h.State != testum.HostConnecting || h.ExecutorID != "ex1" {
		t.Fatalf("claim: %+v %v %v", h, ok, err)
	}
	if _, ok, err := st.RunHostClaim(ctx, run.ID, 0, 1, "ex2"); err != nil || ok {
		t.Fatalf("a second claim of the same attempt: %v %v", ok, err)
	}
	if ok, err := st.RunHostSetRunning(ctx, run.ID, 0, 1, "ex2", p1.ID); err != nil || ok {
		t.Fatalf("running by another executor: %v %v", ok, err)
	}
	if ok, err := st.RunHostSetRunning(ctx, run.ID, 0, 1, "ex1", p1.ID); err != nil || !ok {
		t.Fatalf("running: %v %v", ok, err)
	}
	if p, err := st.Platform(ctx, p1.ID); err != nil || p.State != "reachable" {
		t.Fatalf("platform after running: %+v %v", p, err)
	}
	zero := 0
	res := store.HostResult{State: testum.HostOK, ExitCode: &zero, OutputBytes: 3}
	if _, ok, err := st.RunHostFinish(ctx, run.ID, 0, 1, "ex2", res); err != nil || ok {
		t.Fatalf("finish by another executor: %v %v", ok, err)
	}
	h, ok, err = st.RunHostFinish(ctx, run.ID, 0, 1, "ex1", res)
	if err != nil || !ok || h.State != testum.HostOK || h.ExitCode == nil || *h.ExitCode != 0 || h.FinishedAt == nil {
		t.Fatalf("finish: %+v %v %v", h, ok, err)
	}
	if _, ok, err := st.RunHostFinish(ctx, run.ID, 0, 1, "ex1", res); err != nil || ok {
		t.Fatalf("finish twice: %v %v", ok, err)
	}
	if ok, err := st.RunHostEndUnstarted(ctx, run.ID, 1, testum.HostUnreachable, "no route"); err != nil || !ok {
		t.Fatalf("end unstarted: %v %v", ok, err)
	}
	pr, err := st.RunProgress(ctx, run.ID)
	if err != nil || pr != (store.Progress{Total: 2, Finished: 2, Failures: 1, OK: 1}) {
		t.Fatalf("progress: %+v %v", pr, err)
	}
	if r, p, err := st.RunWithProgress(ctx, run.ID); err != nil || p != pr || r.ID != run.ID || r.CoordinatorID != "ex1" ||
		r.State != testum.RunRunning || r.Spec.Command != "true" {
		t.Fatalf("run with progress: %+v %+v %v", r, p, err)
	}
	if _, _, err := st.RunWithProgress(ctx, uuid.New()); !store.IsNotFound(err) {
		t.Fatalf("run with progress of no run: %v, want not found", err)
	}
	done, ok, err := st.RunFinish(ctx, run.ID, "ex1", testum.RunFailed, "1 host failed")
	if err != nil || !ok || done.State != testum.RunFailed || done.FinishedAt == nil {
		t.Fatalf("run finish: %+v %v %v", done, ok, err)
	}
	if _, ok, err := st.RunFinish(ctx, run.ID, "ex1", testum.RunSucceeded, ""); err != nil || ok {
		t.Fatalf("finishing a finished run: %v %v", ok, err)
	}

	// The history counts every run its filter matches.
	newRun(t, st, p2)
	newRun(t, st, p2)
	for _, tc := range []struct {
		f             store.RunFilter
		limit, offset int
		n, total      int
	}{
		{store.RunFilter{}, 2, 0, 2, 3},
		{store.RunFilter{}, 2, 5, 0, 3},
		{store.RunFilter{State: "queued"}, 1, 1, 1, 2},
		{store.RunFilter{PlatformID: &p1.ID}, 10, 0, 1, 1},
		{store.RunFilter{User: "nobody"}, 10, 0, 0, 0},
	} {
		runs, total, err := st.RunSearch(ctx, tc.f, tc.limit, tc.offset)
		if err != nil || len(runs) != tc.n || total != tc.total {
			t.Errorf("RunSearch %+v: %d of %d, %v; want %d of %d", tc.f, len(runs), total, err, tc.n, tc.total)
		}
	}
}

func TestCredentialSealing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sealer := &fakeSealer{keyID: "k1"}
	st := open(t, func(c *store.Config) { c.Sealer = sealer })
	var a, b testum.Credential
	err := st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if a, err = tx.CredentialCreate(ctx, store.NewSecret{Name: "a", Kind: testum.AuthPrivateKey,
			Secret: []byte("PRIVATE KEY A"), Passphrase: []byte("pass A")}); err != nil {
			return err
		}
		b, err = tx.CredentialCreate(ctx, store.NewSecret{Name: "b", Kind: testum.AuthPassword, Secret: []byte("password B")})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !a.HasPassphrase || b.HasPassphrase || a.KeyID != "k1" {
		t.Fatalf("created: %+v %+v", a, b)
	}
	var raw []byte
	if err := st.Pool().QueryRow(ctx, "SELECT secret || passphrase FROM credentials WHERE id = $1", a.ID).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("PRIVATE KEY A")) || bytes.Contains(raw, []byte("pass A")) {
		t.Fatal("a plaintext secret reached the row")
	}
	sec, err := st.CredentialOpen(ctx, a.ID)
	if err != nil || string(sec.Secret) != "PRIVATE KEY A" || string(sec.Passphrase) != "pass A" || sec.Kind != testum.AuthPrivateKey {
		t.Fatalf("open: %+v %v", sec, err)
	}
	// A ciphertext is bound to its row: copied into another, it does not open.
	exec(t, st, "UPDATE credentials SET secret = (SELECT secret FROM credentials WHERE id = $1) WHERE id = $2", a.ID, b.ID)
	if _, err := st.CredentialOpen(ctx, b.ID); err == nil {
		t.Fatal("a secret copied from another row opened")
	}
	// Several at once: those that open, in one read; one that does not (or
	// does not exist) is left out.
	many, err := st.CredentialsOpen(ctx, []int64{a.ID, b.ID, b.ID + 1000, a.ID})
	if err != nil || len(many) != 1 || string(many[a.ID].Secret) != "PRIVATE KEY A" || string(many[a.ID].Passphrase) != "pass A" ||
		many[a.ID].Kind != testum.AuthPrivateKey {
		t.Fatalf("open several: %+v %v, want only credential a", many, err)
	}
	exec(t, st, "UPDATE credentials SET secret = $1 WHERE id = $2", []byte("k1:"+hexAD(b.ID)+":"+hex.EncodeToString([]byte("password B"))), b.ID)

	sealer.mu.Lock()
	sealer.keyID = "k2"
	sealer.mu.Unlock()
	var rot store.Rotation
	err = st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		rot, err = tx.CredentialsRotate(ctx, func(ct []byte) bool { return !bytes.HasPrefix(ct, []byte("k2:")) })
		return err
	})
	if err != nil || rot != (store.Rotation{Checked: 2, Resealed: 2}) {
		t.Fatalf("rotate: %+v %v", rot, err)
	}
	if sec, err := st.CredentialOpen(ctx, b.ID); err != nil || string(sec.Secret) != "password B" {
		t.Fatalf("open after rotation: %+v %v", sec, err)
	}
	if c, err := st.CredentialByName(ctx, "a"); err != nil || c.KeyID != "k2" {
		t.Fatalf("key id after rotation: %+v %v", c, err)
	}

	noKey := open(t, func(c *store.Config) { c.Sealer = nil })
	err = noKey.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.CredentialCreate(ctx, store.NewSecret{Name: "c", Kind: testum.AuthPassword, Secret: []byte("x")})
		return err
	})
	if err == nil {
		t.Fatal("a credential was stored without an encryption key")
	}
}

func hexAD(id int64) string { return hex.EncodeToString(fmt.Appendf(nil, "credentials/%d/secret", id)) }

// A method called on the store InTx hands out runs in the transaction: it
// sees the transaction's writes, and they go when it rolls back, however
// deep the savepoints.
func TestMethodsRunInTheTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := open(t, nil)
	p := createPlatform(t, st, "a", nil)
	run := newRun(t, st, p)
	if _, ok, err := st.RunCoordinate(ctx, run.ID, "ex1", time.Minute); err != nil || !ok {
		t.Fatalf("coordinate: %v %v", ok, err)
	}
	errRollback := errors.New("roll back")
	err := st.InTx(ctx, func(tx *store.Tx) error {
		u, err := tx.UserCreate(ctx, "carol", "admin", "h", nil)
		if err != nil {
			return err
		}
		if got, err := tx.UserGet(ctx, u.ID); err != nil || got.Username != "carol" {
			t.Errorf("the transaction does not see its own user: %+v %v", got, err)
		}
		if _, err := st.UserGet(ctx, u.ID); !store.IsNotFound(err) {
			t.Errorf("the pool sees an uncommitted user: %v", err)
		}
		if err := tx.Audit(ctx, testum.AuditEntry{Actor: "carol", Action: "user.create", Target: "carol"}); err != nil {
			return err
		}
		if _, err := tx.RunRequestCancel(ctx, run.ID); err != nil {
			return err
		}
		// RunHostsRelease opens its own transaction: a savepoint here.
		if rel, err := tx.RunHostsRelease(ctx, run.ID, "ex1", 1); err != nil || len(rel) != 1 {
			t.Errorf("release inside a transaction: %+v %v", rel, err)
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("InTx: %v", err)
	}
	if n, err := st.UserCount(ctx); err != nil || n != 0 {
		t.Fatalf("users after rollback: %d %v", n, err)
	}
	if _, total, err := st.AuditList(ctx, store.AuditFilter{Action: "user"}, 10, 0); err != nil || total != 0 {
		t.Fatalf("audit entries after rollback: %d %v", total, err)
	}
	got, err := st.Run(ctx, run.ID)
	if err != nil || got.CancelRequested {
		t.Fatalf("run after rollback: %+v %v", got, err)
	}
	if pr, err := st.RunProgress(ctx, run.ID); err != nil || pr.Pending != 1 {
		t.Fatalf("progress after rollback: %+v %v", pr, err)
	}

	// A method that writes several rows is whole on the pool too: a platform
	// refused for its name leaves no inline credential behind.
	_, err = st.PlatformCreate(ctx, store.NewPlatform{Name: "a", Host: "127.0.0.2", Port: 22, Username: "u",
		AuthMethod: testum.AuthPassword, Secret: &store.NewSecret{Kind: testum.AuthPassword, Secret: []byte("pw")}})
	if testum.CodeOf(err) != testum.CodeConflict {
		t.Fatalf("a second platform a: %v", err)
	}
	var creds int
	if err := st.Pool().QueryRow(ctx, "SELECT count(*) FROM credentials").Scan(&creds); err != nil || creds != 1 {
		t.Fatalf("credentials after a refused platform: %d %v", creds, err)
	}

	// Once holds its job for the transaction: nested, the same job does not
	// run again until the outer one ends.
	ran, err := st.Once(ctx, "job", func(tx *store.Tx) error {
		inner, err := st.Once(ctx, "job", func(*store.Tx) error { return nil })
		if err != nil || inner {
			t.Errorf("a second Once ran while the first held the job: %v %v", inner, err)
		}
		return nil
	})
	if err != nil || !ran {
		t.Fatalf("Once: %v %v", ran, err)
	}
}

// Liveness and ages are measured by the database clock, which is what
// heartbeat_at, released_at and created_at are written with; an injected
// clock far off changes none of them.
func TestExecutorTimesUseTheDatabaseClock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := &clock{t: time.Now().Add(48 * time.Hour)}
	// Heartbeats are aged by minutes below, on a server that may have
	// started seconds ago: silence counts from long before.
	st := open(t, func(c *store.Config) {
		c.Now = clk.Now
		c.HeardSince = func() time.Time { return time.Unix(0, 0) }
	})
	const dead = 30 * time.Second
	p := createPlatform(t, st, "a", nil)
	run := newRun(t, st, p)
	for _, ex := range []string{"live", "silent"} {
		if err := st.ExecutorRegister(ctx, ex, "host", 1, 4); err != nil {
			t.Fatal(err)
		}
	}
	exec(t, st, "UPDATE executors SET heartbeat_at = now() - interval '1 minute' WHERE id = 'silent'")
	online, err := st.ExecutorsOnline(ctx, dead)
	if err != nil || len(online) != 1 || online[0].ID != "live" {
		t.Fatalf("online: %+v %v", online, err)
	}

	if _, ok, err := st.RunCoordinate(ctx, run.ID, "silent", time.Hour); err != nil || !ok {
		t.Fatalf("coordinate: %v %v", ok, err)
	}
	// The silent executor's liveness expired 30 s ago (a minute since its
	// heartbeat, less dead): the run, created just now, is orphaned at once
	// and settled by that expiry, not by its own age.
	for _, c := range []struct {
		settle  time.Duration
		settled bool
	}{{0, true}, {10 * time.Second, true}, {45 * time.Second, false}, {time.Hour, false}} {
		ids, err := st.RunsOrphaned(ctx, dead, c.settle)
		if err != nil || len(ids) != 1 || ids[0] != (store.OrphanedRun{ID: run.ID, Settled: c.settled}) {
			t.Fatalf("a young run coordinated by a silent executor, settle %s: %+v %v, want settled=%v", c.settle, ids, err, c.settled)
		}
	}
	if _, ok, err := st.RunCoordinate(ctx, run.ID, "live", dead); err != nil || !ok {
		t.Fatalf("taking over from a silent coordinator: %v %v", ok, err)
	}
	if ids, err := st.RunsOrphaned(ctx, dead, 0); err != nil || len(ids) != 0 {
		t.Fatalf("a run a live executor coordinates is orphaned: %v %v", ids, err)
	}

	if _, err := st.RunHostsRelease(ctx, run.ID, "live", 1); err != nil {
		t.Fatal(err)
	}
	if w, err := st.RunHostsReleasedWaiting(ctx, run.ID, "live", time.Minute); err != nil || len(w) != 0 {
		t.Fatalf("a host released just now waits longer than a minute: %v %v", w, err)
	}
	exec(t, st, "UPDATE run_hosts SET released_at = now() - interval '2 minutes' WHERE run_id = $1", run.ID)
	if w, err := st.RunHostsReleasedWaiting(ctx, run.ID, "live", time.Minute); err != nil || len(w) != 1 {
		t.Fatalf("a host released two minutes ago: %v %v", w, err)
	}
	if _, ok, err := st.RunHostClaim(ctx, run.ID, 0, 1, "silent"); err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	deadIDs, err := st.ExecutorsDeadHolding(ctx, dead)
	if err != nil || len(deadIDs) != 1 || deadIDs[0] != "silent" {
		t.Fatalf("dead executors holding hosts: %v %v", deadIDs, err)
	}
	// A connecting host never started its command: it is queued again, not lost.
	if lost, err := st.RunHostsLoseExecutor(ctx, "silent"); err != nil || len(lost) != 0 {
		t.Fatalf("a connecting host declared lost: %+v %v", lost, err)
	}
	requeued, err := st.RunHostsRequeueUnstarted(ctx, "silent")
	if err != nil || len(requeued) != 1 || requeued[0].RunID != run.ID || requeued[0].Attempt != 1 {
		t.Fatalf("requeue the connecting host: %+v %v", requeued, err)
	}
	if _, ok, err := st.RunHostClaim(ctx, run.ID, 0, 2, "silent"); err != nil || !ok {
		t.Fatalf("claim the next attempt: %v %v", ok, err)
	}
	exec(t, st, "UPDATE run_hosts SET state = 'running' WHERE run_id = $1", run.ID)
	lost, err := st.RunHostsLoseExecutor(ctx, "silent")
	if err != nil || len(lost) != 1 || lost[0].RunID != run.ID || lost[0].Attempt != 2 {
		t.Fatalf("lose: %+v %v", lost, err)
	}
	if ok, err := st.ExecutorHeartbeat(ctx, "silent"); err != nil || !ok {
		t.Fatalf("heartbeat: %v %v", ok, err)
	}
	if ids, err := st.ExecutorsDeadHolding(ctx, dead); err != nil || len(ids) != 0 {
		t.Fatalf("dead executors after the hosts were lost: %v %v", ids, err)
	}
}

// Without an injected clock, session idleness and the login window are
// measured by the database clock too.
func TestSessionAndLoginTimesUseTheDatabaseClock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := open(t, nil)
	u := createUser(t, st, "dave")
	const idle = 15 * time.Minute
	sid, token := uuid.New(), []byte("t")
	var expires, dbNow time.Time
	err := st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		expires, err = tx.SessionCreate(ctx, store.NewSession{ID: sid, UserID: u.ID, TokenHash: token, Lifetime: time.Hour})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Pool().QueryRow(ctx, "SELECT created_at FROM sessions WHERE id = $1", sid).Scan(&dbNow); err != nil {
		t.Fatal(err)
	}
	if !expires.Equal(dbNow.Add(time.Hour)) {
		t.Fatalf("the session expires at %s, want its opening by the database clock (%s) plus the lifetime", expires, dbNow)
	}
	if _, err := st.SessionTouch(ctx, sid, token, idle); err != nil {
		t.Fatalf("touch of a fresh session: %v", err)
	}
	exec(t, st, "UPDATE sessions SET last_activity = now() - interval '20 minutes' WHERE id = $1", sid)
	if _, err := st.SessionTouch(ctx, sid, token, idle); !store.IsNotFound(err) {
		t.Fatalf("touch of an idle session: %v", err)
	}
	if _, err := st.SessionTouch(ctx, sid, token, time.Hour); err != nil {
		t.Fatalf("touch within a longer idle limit: %v", err)
	}
	exec(t, st, "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = $1", sid)
	if ended, err := st.SessionsExpire(ctx, idle); err != nil || len(ended) != 1 {
		t.Fatalf("expire: %v %v", ended, err)
	}
	var reason string
	if err := st.Pool().QueryRow(ctx, "SELECT end_reason FROM sessions WHERE id = $1", sid).Scan(&reason); err != nil || reason != "expired" {
		t.Fatalf("end reason %q %v", reason, err)
	}

	old, err := st.LoginAttempt(ctx, "127.0.0.1", "dave")
	if err != nil {
		t.Fatal(err)
	}
	exec(t, st, "UPDATE login_failures SET at = now() - interval '2 minutes' WHERE id = $1", old)
	self, err := st.LoginAttempt(ctx, "127.0.0.1", "DAVE")
	if err != nil {
		t.Fatal(err)
	}
	n, err := st.LoginAttemptCounts(ctx, self, "127.0.0.1", "dave", time.Minute)
	if err != nil || n.ByPair != 1 || n.ByIP != 1 || n.ByUser != 1 {
		t.Fatalf("counts within a minute: %+v %v", n, err)
	}
	if !n.NewestPair.Equal(n.At.Add(-time.Minute)) || n.OldestPair.After(n.At) {
		t.Fatalf("times: %+v", n)
	}
	if n, err := st.LoginAttemptCounts(ctx, self, "127.0.0.1", "dave", 5*time.Minute); err != nil || n.ByPair != 2 {
		t.Fatalf("counts within five minutes: %+v %v", n, err)
	}
	if err := st.LoginFailuresPrune(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n, err := st.LoginAttemptCounts(ctx, self, "127.0.0.1", "dave", time.Hour); err != nil || n.ByPair != 1 {
		t.Fatalf("counts after pruning: %+v %v", n, err)
	}
}

// Keyset pages (before_id) walk the same order as offset pages, ties in
// time included, and the total counts the whole filter on every page, the
// one past the end too.
// Once another executor took a run over (the first one went silent, e.g.
// paused), every write the first one makes as the run's coordinator is
// refused and changes nothing; the new coordinator's go through.
func TestCoordinatorWritesAreFenced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Silence counts from long before a server that may have started
	// seconds ago.
	st := open(t, func(c *store.Config) { c.HeardSince = func() time.Time { return time.Unix(0, 0) } })
	p1, p2, p3 := createPlatform(t, st, "a", nil), createPlatform(t, st, "b", nil), createPlatform(t, st, "c", nil)
	run := newRun(t, st, p1, p2, p3)
	for _, ex := range []string{"old", "new"} {
		if err := st.ExecutorRegister(ctx, ex, "host", 1, 4); err != nil {
			t.Fatal(err)
		}
	}
	const dead = 30 * time.Second
	if _, ok, err := st.RunCoordinate(ctx, run.ID, "old", dead); err != nil || !ok {
		t.Fatalf("coordinate: %v %v", ok, err)
	}
	if rel, err := st.RunHostsRelease(ctx, run.ID, "old", 1); err != nil || len(rel) != 1 {
		t.Fatalf("release by the coordinator: %+v %v", rel, err)
	}
	exec(t, st, "UPDATE run_hosts SET released_at = now() - interval '2 minutes' WHERE run_id = $1 AND released_at IS NOT NULL", run.ID)
	exec(t, st, "UPDATE executors SET heartbeat_at = now() - interval '1 hour' WHERE id = 'old'")
	if _, ok, err := st.RunCoordinate(ctx, run.ID, "new", dead); err != nil || !ok {
		t.Fatalf("taking over from a silent coordinator: %v %v", ok, err)
	}
	before, err := st.RunHosts(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}

	if rel, err := st.RunHostsRelease(ctx, run.ID, "old", 5); !errors.Is(err, store.ErrNotCoordinator) || len(rel) != 0 {
		t.Errorf("release by the old coordinator: %+v %v, want ErrNotCoordinator", rel, err)
	}
	if ended, err := st.RunHostsEndQueued(ctx, run.ID, "old", testum.HostCanceled); !errors.Is(err, store.ErrNotCoordinator) || len(ended) != 0 {
		t.Errorf("cancel of queued hosts by the old coordinator: %+v %v, want ErrNotCoordinator", ended, err)
	}
	if err := st.RunAbort(ctx, run.ID, "old", "too many failures"); !errors.Is(err, store.ErrNotCoordinator) {
		t.Errorf("abort by the old coordinator: %v, want ErrNotCoordinator", err)
	}
	if _, ok, err := st.RunFinish(ctx, run.ID, "old", testum.RunSucceeded, ""); !errors.Is(err, store.ErrNotCoordinator) || ok {
		t.Errorf("finish by the old coordinator: %v %v, want ErrNotCoordinator", ok, err)
	}
	if w, err := st.RunHostsReleasedWaiting(ctx, run.ID, "old", time.Minute); err != nil || len(w) != 0 {
		t.Errorf("hosts to republish for the old coordinator: %+v %v, want none", w, err)
	}
	after, err := st.RunHosts(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	for i := range before {
		if after[i].State != before[i].State || !timesEqual(after[i].ReleasedAt, before[i].ReleasedAt) {
			t.Errorf("host %d changed by the old coordinator: %+v, was %+v", i, after[i], before[i])
		}
	}
	if r, err := st.Run(ctx, run.ID); err != nil || r.State != testum.RunRunning || r.AbortReason != "" || r.CoordinatorID != "new" {
		t.Errorf("run after the old coordinator's writes: %+v %v", r, err)
	}

	if w, err := st.RunHostsReleasedWaiting(ctx, run.ID, "new", time.Minute); err != nil || len(w) != 1 {
		t.Errorf("hosts to republish for the new coordinator: %+v %v, want 1", w, err)
	}
	if rel, err := st.RunHostsRelease(ctx, run.ID, "new", 1); err != nil || len(rel) != 1 {
		t.Errorf("release by the new coordinator: %+v %v", rel, err)
	}
	if err := st.RunAbort(ctx, run.ID, "new", "too many failures"); err != nil {
		t.Errorf("abort by the new coordinator: %v", err)
	}
	if err := st.RunAbort(ctx, run.ID, "new", "again"); err != nil {
		t.Errorf("abort recorded already: %v", err)
	}
	if ended, err := st.RunHostsEndQueued(ctx, run.ID, "new", testum.HostSkipped); err != nil || len(ended) != 3 || ended[0].Attempt != 0 {
		t.Errorf("skip of queued hosts by the new coordinator: %+v %v", ended, err)
	}
	if ended, err := st.RunHostsEndQueued(ctx, run.ID, "new", testum.HostSkipped); err != nil || len(ended) != 0 {
		t.Errorf("skip with no host queued: %+v %v", ended, err)
	}
	if r, ok, err := st.RunFinish(ctx, run.ID, "new", testum.RunAborted, "too many failures"); err != nil || !ok || r.State != testum.RunAborted {
		t.Errorf("finish by the new coordinator: %+v %v %v", r, ok, err)
	}
	if _, ok, err := st.RunFinish(ctx, run.ID, "new", testum.RunAborted, ""); err != nil || ok {
		t.Errorf("finishing a finished run: %v %v", ok, err)
	}
}

func timesEqual(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func TestRunAndAuditKeysetPages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := open(t, nil)
	p := createPlatform(t, st, "a", nil)
	for i := range 3 {
		newRun(t, st, p)
		if err := st.Audit(ctx, testum.AuditEntry{Actor: "alice", Action: "run.create", Target: fmt.Sprint(i), Outcome: testum.AuditOK}); err != nil {
			t.Fatal(err)
		}
	}
	// Two more runs and entries at one time (a transaction's now()): the
	// id breaks the tie.
	newRun(t, st, p)
	newRun(t, st, p)
	exec(t, st, "UPDATE runs SET created_at = (SELECT max(created_at) FROM runs) WHERE id IN (SELECT id FROM runs ORDER BY created_at DESC LIMIT 2)")
	err := st.InTx(ctx, func(tx *store.Tx) error {
		for i := range 2 {
			if err := tx.Audit(ctx, testum.AuditEntry{Actor: "alice", Action: "run.create", Target: fmt.Sprint(3 + i), Outcome: testum.AuditOK}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	all, total, err := st.RunSearch(ctx, store.RunFilter{}, 100, 0)
	if err != nil || len(all) != 5 || total != 5 {
		t.Fatalf("all runs: %d of %d, %v", len(all), total, err)
	}
	var walked []uuid.UUID
	f := store.RunFilter{}
	for range 10 {
		page, total, err := st.RunSearch(ctx, f, 2, 0)
		if err != nil || total != 5 {
			t.Fatalf("runs page after %v: total %d, %v", f.BeforeID, total, err)
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			walked = append(walked, r.ID)
		}
		f.BeforeID = &page[len(page)-1].ID
	}
	for i, r := range all {
		if i >= len(walked) || walked[i] != r.ID {
			t.Fatalf("keyset walk of runs %v, want the offset order %v", walked, all)
		}
	}
	if len(walked) != len(all) {
		t.Fatalf("keyset walk of runs: %d runs, want %d", len(walked), len(all))
	}

	entries, total64, err := st.AuditList(ctx, store.AuditFilter{Action: "run"}, 100, 0)
	if err != nil || len(entries) != 5 || total64 != 5 {
		t.Fatalf("all entries: %d of %d, %v", len(entries), total64, err)
	}
	var ids []int64
	af := store.AuditFilter{Action: "run"}
	for range 10 {
		page, total, err := st.AuditList(ctx, af, 2, 0)
		if err != nil || total != 5 {
			t.Fatalf("audit page after %v: total %d, %v", af.BeforeID, total, err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			ids = append(ids, e.ID)
		}
		af.BeforeID = &page[len(page)-1].ID
	}
	if len(ids) != len(entries) {
		t.Fatalf("keyset walk of the audit log: %v, want %d entries", ids, len(entries))
	}
	for i, e := range entries {
		if ids[i] != e.ID {
			t.Fatalf("keyset walk of the audit log %v, want the offset order of %+v", ids, entries)
		}
	}
}

// TestRunHostsClaimBatch: claims made together keep the one-by-one rules:
// a host is taken only when queued and for the next attempt, once even if
// named twice, never by a second executor (in a batch or alone, also when
// two executors claim the same hosts at once), and what follows is fenced
// by the executor that took it.
func TestRunHostsClaimBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := open(t, nil)
	var ps []testum.Platform
	for i := range 4 {
		ps = append(ps, createPlatform(t, st, fmt.Sprintf("p%d", i), nil))
	}
	run := newRun(t, st, ps...)
	claimed := func(hs []testum.RunHost) map[int]string {
		out := map[int]string{}
		for _, h := range hs {
			if _, dup := out[h.Idx]; dup {
				t.Errorf("host %d returned twice", h.Idx)
			}
			if h.State != testum.HostConnecting || h.Attempt != 1 {
				t.Errorf("claimed host %d: %s attempt %d", h.Idx, h.State, h.Attempt)
			}
			out[h.Idx] = h.ExecutorID
		}
		return out
	}

	hs, err := st.RunHostsClaim(ctx, "ex1", []store.Claim{
		{Run: run.ID, Idx: 0, Attempt: 1}, {Run: run.ID, Idx: 0, Attempt: 1}, // a duplicate delivery
		{Run: run.ID, Idx: 1, Attempt: 2}, // not the next attempt
		{Run: run.ID, Idx: 2, Attempt: 1},
		{Run: uuid.New(), Idx: 3, Attempt: 1}, // no such run
	})
	if got := claimed(hs); err != nil || len(got) != 2 || got[0] != "ex1" || got[2] != "ex1" {
		t.Fatalf("batch claim: %v %v, want hosts 0 and 2 for ex1", got, err)
	}
	hs, err = st.RunHostsClaim(ctx, "ex2", []store.Claim{
		{Run: run.ID, Idx: 0, Attempt: 1}, {Run: run.ID, Idx: 2, Attempt: 1}, {Run: run.ID, Idx: 3, Attempt: 1}})
	if got := claimed(hs); err != nil || len(got) != 1 || got[3] != "ex2" {
		t.Fatalf("a second executor's batch: %v %v, want only host 3", got, err)
	}
	if _, ok, err := st.RunHostClaim(ctx, run.ID, 0, 1, "ex2"); err != nil || ok {
		t.Fatalf("a second executor's claim of a batch-claimed host: %v %v", ok, err)
	}
	if ok, err := st.RunHostSetRunning(ctx, run.ID, 0, 1, "ex2", ps[0].ID); err != nil || ok {
		t.Fatalf("running by the executor that did not claim it: %v %v", ok, err)
	}
	if ok, err := st.RunHostSetRunning(ctx, run.ID, 0, 1, "ex1", ps[0].ID); err != nil || !ok {
		t.Fatalf("running by its claimer: %v %v", ok, err)
	}
	if _, ok, err := st.RunHostFinish(ctx, run.ID, 0, 1, "ex2", store.HostResult{State: testum.HostOK}); err != nil || ok {
		t.Fatalf("finished by the executor that did not claim it: %v %v", ok, err)
	}
	if _, ok, err := st.RunHostFinish(ctx, run.ID, 0, 1, "ex1", store.HostResult{State: testum.HostOK}); err != nil || !ok {
		t.Fatalf("finished by its claimer: %v %v", ok, err)
	}
	if hs, err := st.RunHostsClaim(ctx, "ex1", []store.Claim{{Run: run.ID, Idx: 0, Attempt: 1}}); err != nil || len(hs) != 0 {
		t.Fatalf("claim of a finished host: %+v %v", hs, err)
	}

	// Two executors claiming the same hosts at once: each host is taken
	// by exactly one of them.
	race := newRun(t, st, ps...)
	var claims []store.Claim
	for i := range ps {
		claims = append(claims, store.Claim{Run: race.ID, Idx: i, Attempt: 1})
	}
	var wg sync.WaitGroup
	got := make([][]testum.RunHost, 2)
	errs := make([]error, 2)
	for i, ex := range []string{"ex1", "ex2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = st.RunHostsClaim(ctx, ex, claims)
		}()
	}
	wg.Wait()
	taken := map[int]int{}
	for i := range got {
		if errs[i] != nil {
			t.Fatalf("concurrent claim: %v", errs[i])
		}
		for _, h := range got[i] {
			taken[h.Idx]++
		}
	}
	for i := range ps {
		if taken[i] != 1 {
			t.Errorf("host %d taken %d times by two executors claiming at once", i, taken[i])
		}
	}
}

// TestRunHostsFinishBatch: ends recorded together keep RunHostFinish's
// fencing (only the claiming executor, only the claimed attempt, only an
// unfinished host) and each host keeps its own result, nulls included.
func TestRunHostsFinishBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := open(t, nil)
	var ps []testum.Platform
	for i := range 4 {
		ps = append(ps, createPlatform(t, st, fmt.Sprintf("p%d", i), nil))
	}
	run := newRun(t, st, ps...)
	for i, ex := range []string{"ex1", "ex1", "ex1", "ex2"} {
		if _, ok, err := st.RunHostClaim(ctx, run.ID, i, 1, ex); err != nil || !ok {
			t.Fatalf("claim %d: %v %v", i, ok, err)
		}
	}
	if ok, err := st.RunHostSetRunning(ctx, run.ID, 1, 1, "ex1", ps[1].ID); err != nil || !ok {
		t.Fatal(ok, err)
	}
	three := 3
	hs, err := st.RunHostsFinish(ctx, "ex1", []store.Finish{
		{Run: run.ID, Idx: 0, Attempt: 1, Result: store.HostResult{State: testum.HostUnreachable, Error: "refused"}},
		{Run: run.ID, Idx: 1, Attempt: 1, Result: store.HostResult{State: testum.HostFailed, ExitCode: &three,
			OutputBytes: 12, Truncated: true, OutputDigest: "d1", LogKey: "k1", ConnectAttempts: 2}},
		{Run: run.ID, Idx: 2, Attempt: 2, Result: store.HostResult{State: testum.HostOK}}, // not the claimed attempt
		{Run: run.ID, Idx: 3, Attempt: 1, Result: store.HostResult{State: testum.HostOK}}, // ex2's host
	})
	if err != nil || len(hs) != 2 {
		t.Fatalf("batch finish: %+v %v, want hosts 0 and 1", hs, err)
	}
	h0, _ := st.RunHost(ctx, run.ID, 0)
	h1, _ := st.RunHost(ctx, run.ID, 1)
	h2, _ := st.RunHost(ctx, run.ID, 2)
	h3, _ := st.RunHost(ctx, run.ID, 3)
	if h0.State != testum.HostUnreachable || h0.Error != "refused" || h0.ExitCode != nil || h0.ConnectAttempts != nil || h0.FinishedAt == nil {
		t.Errorf("host 0: %+v", h0)
	}
	if h1.State != testum.HostFailed || h1.ExitCode == nil || *h1.ExitCode != 3 || h1.OutputBytes != 12 || !h1.Truncated ||
		h1.OutputDigest != "d1" || h1.LogKey != "k1" || h1.ConnectAttempts == nil || *h1.ConnectAttempts != 2 {
		t.Errorf("host 1: %+v", h1)
	}
	if h2.State != testum.HostConnecting || h3.State != testum.HostConnecting {
		t.Errorf("hosts 2 and 3 finished by a batch that was not theirs to finish: %s %s", h2.State, h3.State)
	}
	if hs, err := st.RunHostsFinish(ctx, "ex1", []store.Finish{
		{Run: run.ID, Idx: 0, Attempt: 1, Result: store.HostResult{State: testum.HostOK}}}); err != nil || len(hs) != 0 {
		t.Errorf("a finished host finished again: %+v %v", hs, err)
	}
	if _, err := st.RunHostsFinish(ctx, "ex2", []store.Finish{
		{Run: run.ID, Idx: 3, Attempt: 1, Result: store.HostResult{State: "no-such-state"}}}); !store.Refused(err) {
		t.Errorf("a result the database refuses: %v, want store.Refused", err)
	}
	if store.Refused(errors.New("connection refused")) {
		t.Error("an error that is not the database's answer counts as refused")
	}
	if _, ok, err := st.RunHostFinish(ctx, run.ID, 3, 1, "ex2", store.HostResult{State: testum.HostOK}); err != nil || !ok {
		t.Errorf("ex2 finishing its own host: %v %v", ok, err)
	}
}

// TestRunHostsSetRunningBatch: hosts reached together move to running in
// one statement with RunHostSetRunning's fencing, each on its own: only the
// claiming executor's connecting attempt moves (not a host requeued and
// claimed again by another executor meanwhile, not another executor's
// host, not a host named twice twice), and every platform named is
// recorded as reached, that of a host no longer ours too, as one by one.
// Two executors marking hosts of the same platforms at once, in opposite
// orders, both succeed.
func TestRunHostsSetRunningBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := open(t, nil)
	var ps []testum.Platform
	for i := range 4 {
		ps = append(ps, createPlatform(t, st, fmt.Sprintf("p%d", i), nil))
	}
	// Hosts 0 and 1 share platform 0.
	run := newRun(t, st, ps[0], ps[0], ps[1], ps[2], ps[3])
	for _, ex := range []string{"ex1", "ex2", "ex-old"} {
		if err := st.ExecutorRegister(ctx, ex, "host", 1, 4); err != nil {
			t.Fatal(err)
		}
	}
	for i, ex := range []string{"ex1", "ex1", "ex1", "ex-old", "ex2"} {
		if _, ok, err := st.RunHostClaim(ctx, run.ID, i, 1, ex); err != nil || !ok {
			t.Fatalf("claim %d: %v %v", i, ok, err)
		}
	}
	// Host 3 was ex-old's; its executor died before the command started and
	// ex1 still holds a stale attempt of it: requeued, then claimed anew by ex2.
	if hs, err := st.RunHostsRequeueUnstarted(ctx, "ex-old"); err != nil || len(hs) != 1 {
		t.Fatalf("requeue: %+v %v", hs, err)
	}
	if _, ok, err := st.RunHostClaim(ctx, run.ID, 3, 2, "ex2"); err != nil || !ok {
		t.Fatalf("claim of host 3 again: %v %v", ok, err)
	}
	for _, p := range ps {
		if err := st.PlatformRecordContact(ctx, p.ID, testum.PlatformState(testum.HostUnreachable), "down"); err != nil {
			t.Fatal(err)
		}
	}

	moved, err := st.RunHostsSetRunning(ctx, "ex1", []store.Running{
		{Run: run.ID, Idx: 0, Attempt: 1, Platform: ps[0].ID},
		{Run: run.ID, Idx: 1, Attempt: 1, Platform: ps[0].ID},
		{Run: run.ID, Idx: 1, Attempt: 1, Platform: ps[0].ID}, // delivered twice
		{Run: run.ID, Idx: 2, Attempt: 2, Platform: ps[1].ID}, // not the claimed attempt
		{Run: run.ID, Idx: 3, Attempt: 1, Platform: ps[2].ID}, // requeued and taken by ex2 meanwhile
		{Run: run.ID, Idx: 4, Attempt: 1, Platform: ps[3].ID}, // ex2's host
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]int{}
	for _, r := range moved {
		got[r.Idx]++
		if r.Run != run.ID || r.Attempt != 1 || r.Platform != ps[0].ID {
			t.Errorf("moved %+v", r)
		}
	}
	if len(moved) != 2 || got[0] != 1 || got[1] != 1 {
		t.Fatalf("moved %+v, want hosts 0 and 1 once each", moved)
	}
	hs, err := st.RunHosts(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []testum.HostState{testum.HostRunning, testum.HostRunning, testum.HostConnecting, testum.HostConnecting, testum.HostConnecting} {
		if hs[i].State != want {
			t.Errorf("host %d: %s, want %s", i, hs[i].State, want)
		}
	}
	if hs[3].ExecutorID != "ex2" || hs[3].Attempt != 2 {
		t.Errorf("host 3 after a stale attempt was marked: %+v", hs[3])
	}
	for _, p := range ps {
		got, err := st.Platform(ctx, p.ID)
		if err != nil || got.State != "reachable" || got.StateDetail != "" || got.LastContactAt == nil {
			t.Errorf("platform %s after the batch: %s %q %v %v", p.Name, got.State, got.StateDetail, got.LastContactAt, err)
		}
	}
	if ok, err := st.RunHostSetRunning(ctx, run.ID, 3, 2, "ex2", ps[2].ID); err != nil || !ok {
		t.Errorf("host 3 running by its new claimer: %v %v", ok, err)
	}
	if hs, err := st.RunHostsSetRunning(ctx, "ex1", nil); err != nil || len(hs) != 0 {
		t.Errorf("an empty batch: %+v %v", hs, err)
	}

	// Two executors, hosts over the same platforms, in opposite orders.
	var many []testum.Platform
	for range 3 {
		many = append(many, ps...)
	}
	for round := range 5 {
		race := newRun(t, st, append(append([]testum.Platform{}, many...), many...)...)
		batches := map[string][]store.Running{}
		for i := range 2 * len(many) {
			ex := []string{"ex1", "ex2"}[i/len(many)]
			if _, ok, err := st.RunHostClaim(ctx, race.ID, i, 1, ex); err != nil || !ok {
				t.Fatalf("round %d claim %d: %v %v", round, i, ok, err)
			}
			batches[ex] = append(batches[ex], store.Running{Run: race.ID, Idx: i, Attempt: 1, Platform: many[i%len(many)].ID})
		}
		slices.Reverse(batches["ex2"])
		var wg sync.WaitGroup
		for ex, b := range batches {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if moved, err := st.RunHostsSetRunning(ctx, ex, b); err != nil || len(moved) != len(b) {
					t.Errorf("round %d: %s marked %d of %d hosts: %v", round, ex, len(moved), len(b), err)
				}
			}()
		}
		wg.Wait()
	}
}
