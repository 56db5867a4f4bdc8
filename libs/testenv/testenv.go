// Package testenv is the harness of real components every integration test
// uses: a throwaway PostgreSQL cluster, OpenSSH sshd daemons serving many
// loopback addresses (127.0.x.y) as distinct hosts, and NATS servers with
// JetStream. Everything is started lazily, on loopback, and torn down by Run
// and by the tests' cleanups.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/testum/testum/libs/pgcluster"
)

// teardown holds what Run undoes after the tests.
var teardown struct {
	sync.Mutex
	fns []func()
}

func atTeardown(fn func()) {
	teardown.Lock()
	defer teardown.Unlock()
	teardown.fns = append(teardown.fns, fn)
}

func runTeardown() {
	teardown.Lock()
	fns := teardown.fns
	teardown.fns = nil
	teardown.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// Run runs the tests of a package and then stops what the harness started,
// also when the test binary is interrupted.
func Run(m *testing.M) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		if _, ok := <-sigs; ok {
			runTeardown()
			os.Exit(2)
		}
	}()
	code := m.Run()
	signal.Stop(sigs)
	close(sigs)
	runTeardown()
	return code
}

// shared PostgreSQL cluster of this test binary.
var pg struct {
	once sync.Once
	c    *pgcluster.Cluster
	err  error
}

func sharedCluster() (*pgcluster.Cluster, error) {
	pg.once.Do(func() {
		// Under /tmp (1777) and 0755: reachable by the postgres user, so
		// the cluster is not relocated.
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("testum-testenv-%d", os.Getpid()))
		_ = os.RemoveAll(dir) // left by an earlier process with the same pid
		if err := os.MkdirAll(dir, 0o755); err != nil {
			pg.err = err
			return
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			pg.err = err
			return
		}
		atTeardown(func() { _ = os.RemoveAll(dir) })
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c, err := pgcluster.Start(ctx, pgcluster.Config{Dir: filepath.Join(dir, "pg"), Fast: true, Database: "postgres"})
		if err != nil {
			pg.err = err
			return
		}
		pg.c = c
		release, err := watchCluster(c.DataDir(), dir)
		if err != nil {
			_ = c.Stop(context.Background())
			pg.err = err
			return
		}
		atTeardown(func() {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // immediate: the data is thrown away
			_ = c.Stop(ctx)
			release()
		})
	})
	return pg.c, pg.err
}

// reachableTempDir makes a temporary directory that the postgres user can
// traverse (os.MkdirTemp makes them 0700).
func reachableTempDir(prefix string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// Postgres creates a new empty database on the shared cluster and returns
// its URL; the database is dropped when the test ends.
func Postgres(t testing.TB) string {
	t.Helper()
	c, err := sharedCluster()
	if err != nil {
		t.Fatalf("testenv: PostgreSQL: %v", err)
	}
	name := "t_" + randomHex(6)
	admin := func(sql string) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := admin("CREATE DATABASE " + name); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := admin("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			t.Logf("testenv: drop database %s: %v", name, err)
		}
	})
	return c.URL(name)
}

// NewPostgresCluster starts a private cluster for tests that restart or
// stop PostgreSQL; it is stopped when the test ends.
func NewPostgresCluster(t testing.TB) *pgcluster.Cluster {
	t.Helper()
	dir, err := reachableTempDir("testum-testenv-pgc-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Config{Dir: filepath.Join(dir, "pg"), Fast: true, Database: "testum"})
	if err != nil {
		t.Fatalf("testenv: PostgreSQL cluster: %v", err)
	}
	release, err := watchCluster(c.DataDir(), dir)
	if err != nil {
		_ = c.Stop(context.Background())
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // immediate: the data is thrown away
		_ = c.Stop(ctx)
		release()
	})
	return c
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ClosedPort returns a loopback port nothing listens on (one that was bound
// and closed a moment ago): connecting is refused.
func ClosedPort(t testing.TB) int { return FreePort(t) }

// SilentServer accepts TCP connections on loopback and never writes a byte:
// a host whose sshd hangs. It returns "127.0.0.1:PORT".
func SilentServer(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String()
}

// waitFor polls cond every 50ms until it holds or limit passes (a readiness
// poll, not synchronisation).
func waitFor(limit time.Duration, cond func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %v: %w", limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
