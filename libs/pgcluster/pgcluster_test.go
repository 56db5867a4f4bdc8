package pgcluster_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/testum/testum/libs/pgcluster"
)

// TestStartRestartKeepsData runs a cluster in t.TempDir(): a 0700 directory
// under /tmp, which the postgres user cannot traverse when the test runs as
// root, so the cluster is relocated and the note says where.
func TestStartRestartKeepsData(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "pg")
	c, err := pgcluster.Start(ctx, pgcluster.Config{Dir: dir, Port: 54329, Fast: true, Database: "app"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithCancel(context.Background())
		cancel() // immediate
		_ = c.Stop(stopCtx)
		if base := filepath.Dir(c.DataDir()); strings.HasPrefix(base, "/var/lib/testum/pg-") {
			_ = os.RemoveAll(base)
		}
	})
	if os.Geteuid() == 0 {
		note, err := os.ReadFile(filepath.Join(dir, pgcluster.RelocatedNote))
		if err != nil {
			t.Fatalf("running as root in a 0700 temp dir: want a relocation note: %v", err)
		}
		if !strings.HasPrefix(c.DataDir(), "/var/lib/testum/pg-") || !strings.Contains(string(note), filepath.Dir(c.DataDir())) {
			t.Fatalf("relocated to %s, note %q", c.DataDir(), note)
		}
	} else if !strings.HasPrefix(c.DataDir(), dir) {
		t.Fatalf("data dir %s not under %s", c.DataDir(), dir)
	}
	if !strings.Contains(c.URL("app"), "port=54329") || !strings.HasPrefix(c.URL("app"), "postgres://postgres@/app?host=/") {
		t.Fatalf("URL %s", c.URL("app"))
	}

	exec := func(sql string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, c.URL("app"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, c.URL("app"))
	if err != nil {
		t.Fatal(err)
	}
	var v int
	if err := conn.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != 42 {
		t.Fatalf("after restart: %d, %v", v, err)
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// A second Start on the same directory adopts the running cluster.
	c2, err := pgcluster.Start(ctx, pgcluster.Config{Dir: dir, Port: 54329, Database: "app2"})
	if err != nil {
		t.Fatalf("adopt: %v", err)
	}
	if c2.DataDir() != c.DataDir() {
		t.Fatalf("adopted data dir %s, want %s", c2.DataDir(), c.DataDir())
	}
	conn2, err := pgx.Connect(ctx, c2.URL("app2"))
	if err != nil {
		t.Fatalf("adopted cluster: %v", err)
	}
	if err := conn2.Close(ctx); err != nil {
		t.Fatal(err)
	}

	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(c.DataDir(), "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("postmaster.pid after Stop: %v", err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}
