package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testenv"
	"github.com/testum/testum/libs/testum"
)

// An executor's silence counts only while the database server was up to
// hear it: on a server that started less than dead-after ago (it was down
// or restarting), nobody is dead, nobody's run is taken over or orphaned.
func TestExecutorSilenceCountsFromTheServerStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := open(t, nil) // a server of this test run: up for far less than an hour
	p := createPlatform(t, st, "a", nil)
	run := newRun(t, st, p)
	if err := st.ExecutorRegister(ctx, "silent", "host", 1, 4); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := st.RunCoordinate(ctx, run.ID, "silent", time.Hour); err != nil || !ok {
		t.Fatalf("coordinate: %v %v", ok, err)
	}
	if _, ok, err := st.RunHostClaim(ctx, run.ID, 0, 1, "silent"); err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	exec(t, st, "UPDATE executors SET heartbeat_at = now() - interval '2 hours' WHERE id = 'silent'")
	var up time.Duration
	if err := st.Pool().QueryRow(ctx, "SELECT (extract(epoch FROM now() - pg_postmaster_start_time()) * 1e9)::bigint").Scan(&up); err != nil {
		t.Fatal(err)
	}
	if up >= time.Hour {
		t.Fatalf("the test server has been up for %s: the case needs one up for less than an hour", up)
	}

	const dead = time.Hour // longer than the server has been up
	if ids, err := st.ExecutorsDeadHolding(ctx, dead); err != nil || len(ids) != 0 {
		t.Fatalf("dead executors on a server up for %s, dead-after %s: %v %v", up, dead, ids, err)
	}
	if ids, err := st.RunsOrphaned(ctx, dead, 0); err != nil || len(ids) != 0 {
		t.Fatalf("orphaned runs on a server up for %s: %v %v", up, ids, err)
	}
	if _, ok, err := st.RunCoordinate(ctx, run.ID, "other", dead); err != nil || ok {
		t.Fatalf("run taken from a coordinator silent only while the server was down: %v %v", ok, err)
	}

	// Silence heard for longer than dead-after still means dead.
	const short = time.Millisecond
	if ids, err := st.ExecutorsDeadHolding(ctx, short); err != nil || len(ids) != 1 || ids[0] != "silent" {
		t.Fatalf("dead executors, dead-after %s: %v %v", short, ids, err)
	}
	if ids, err := st.RunsOrphaned(ctx, short, 0); err != nil || len(ids) != 1 || ids[0].ID != run.ID {
		t.Fatalf("orphaned runs, dead-after %s: %v %v", short, ids, err)
	}
	if _, ok, err := st.RunCoordinate(ctx, run.ID, "other", short); err != nil || !ok {
		t.Fatalf("taking over from a coordinator silent for longer than %s: %v %v", short, ok, err)
	}
}

// While PostgreSQL is down, the store answers unavailable (the API's 503),
// with a message that names no socket or host; once it is back, it works.
func TestStoreUnavailableWhilePostgreSQLIsDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := testenv.NewPostgresCluster(t)
	url := c.URL("testum")
	if err := store.Migrate(ctx, url, nil); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, store.Config{URL: url, MaxConns: 4, Sealer: &fakeSealer{keyID: "k1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	run := newRun(t, st)

	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"read": func() error { _, err := st.Run(ctx, run.ID); return err },
		"write": func() error {
			return st.ExecutorRegister(ctx, "ex", "host", 1, 4)
		},
		"transaction": func() error {
			return st.InTx(ctx, func(tx *store.Tx) error { _, err := tx.Run(ctx, run.ID); return err })
		},
		"several rows": func() error { _, err := st.RunHostsRelease(ctx, run.ID, "ex", 1); return err },
	}
	for name, call := range calls {
		err := call()
		var te *testum.Error
		if testum.CodeOf(err) != testum.CodeUnavailable || !errors.As(err, &te) || strings.Contains(te.Message, "/") {
			t.Errorf("%s while PostgreSQL is down: %v (code %s), want unavailable with a plain message", name, err, testum.CodeOf(err))
		}
	}

	if err := c.Restart(ctx); err != nil { // starts the stopped cluster
		t.Fatal(err)
	}
	var last error
	for range 20 { // the pool may hand out a connection that broke with the stop once
		if _, last = st.Run(ctx, run.ID); last == nil {
			break
		}
		if testum.CodeOf(last) != testum.CodeUnavailable {
			t.Fatalf("after PostgreSQL came back: %v", last)
		}
	}
	if last != nil {
		t.Fatalf("after PostgreSQL came back: %v", last)
	}
}
