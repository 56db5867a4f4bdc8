// Package pgcluster runs a private PostgreSQL cluster from the machine's
// PostgreSQL binaries: `testum serve` without DATABASE_URL, and the tests.
//
// The cluster listens on a unix socket in its own 0700 directory and on no
// TCP address unless asked. initdb and the server refuse to run as root, so
// as root they run as the `postgres` user; when that user cannot reach the
// requested directory (under /root, or a private temporary directory) the
// cluster lives in /var/lib/testum/pg-<hash> instead, and a note in the
// requested directory says where.
package pgcluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	retry "github.com/sethvargo/go-retry"
)

// Config describes the cluster.
type Config struct {
	// Dir is where the cluster lives (created 0700): PGDATA is Dir/data, the
	// socket directory Dir/run and the server log Dir/postgres.log, unless
	// the cluster had to be relocated (see the package documentation).
	Dir string
	// BinDir holds initdb, pg_ctl and postgres. Default: the newest
	// /usr/lib/postgresql/*/bin, else the directory of initdb on PATH.
	BinDir string
	// Port names the socket (.s.PGSQL.<port>) and is the TCP port when
	// ListenTCP is set. Default 5432.
	Port int
	// ListenTCP is the listen_addresses setting, e.g. "127.0.0.1"; "" serves
	// the unix socket only.
	ListenTCP string
	// Database is created after start if missing. Default "testum".
	Database string
	// Fast trades durability for speed (tests): fsync, synchronous_commit and
	// full_page_writes off.
	Fast bool
	// Logger receives progress messages; nil discards them.
	Logger *slog.Logger
}

// Cluster is a running cluster. Its methods are not safe for concurrent use.
type Cluster struct {
	cfg     Config
	base    string // directory holding data, run and postgres.log
	data    string // PGDATA
	sock    string // socket directory
	port    int    // port of the running postmaster
	cred    *syscall.Credential
	uid     int
	gid     int
	adopted bool
}

// RelocatedNote is the file written in Config.Dir when the cluster had to be
// relocated; it names the directory that holds the cluster.
const RelocatedNote = "RELOCATED"

// relocationRoot holds the clusters the postgres user could not run in the
// requested directory.
const relocationRoot = "/var/lib/testum"

// Start initialises the cluster if the directory is empty, starts it (or
// adopts a postmaster already running on it) and creates the database.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Port == 0 {
		cfg.Port = 5432
	}
	if cfg.Database == "" {
		cfg.Database = "testum"
	}
	if cfg.BinDir == "" {
		bin, err := findBinDir()
		if err != nil {
			return nil, err
		}
		cfg.BinDir = bin
	}
	if cfg.Dir == "" {
		return nil, errors.New("pgcluster: Config.Dir is empty")
	}
	abs, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	cfg.Dir = abs
	c := &Cluster{cfg: cfg, port: cfg.Port, uid: -1, gid: -1}
	if err := c.prepareDirs(); err != nil {
		return nil, err
	}
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	if err := c.createDatabase(ctx, cfg.Database); err != nil {
		_ = c.Stop(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("create database %q: %w", cfg.Database, err)
	}
	return c, nil
}

func findBinDir() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool { return versionOf(matches[i]) > versionOf(matches[j]) })
	if len(matches) > 0 {
		return filepath.Dir(matches[0]), nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL server binaries not found (apt-get install postgresql), or set DATABASE_URL")
}

func versionOf(initdb string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return v
}

// prepareDirs picks the data directory and who owns it.
func (c *Cluster) prepareDirs() error {
	if err := os.MkdirAll(c.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("postgres dir: %w", err)
	}
	base := c.cfg.Dir
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return errors.New("running as root, PostgreSQL needs an unprivileged `postgres` user (apt-get install postgresql creates it)")
		}
		c.uid, _ = strconv.Atoi(u.Uid)
		c.gid, _ = strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(c.uid), Gid: uint32(c.gid)}
		if !c.reachable(filepath.Dir(c.cfg.Dir)) {
			sum := sha256.Sum256([]byte(c.cfg.Dir))
			base = filepath.Join(relocationRoot, "pg-"+hex.EncodeToString(sum[:6]))
			if err := c.mkdirOwned(relocationRoot, 0o755); err != nil {
				return err
			}
			if err := os.MkdirAll(base, 0o700); err != nil {
				return fmt.Errorf("postgres dir: %w", err)
			}
			note := fmt.Sprintf("The postgres user cannot reach this directory, so the cluster lives in %s\n", base)
			if err := os.WriteFile(filepath.Join(c.cfg.Dir, RelocatedNote), []byte(note), 0o644); err != nil {
				return fmt.Errorf("postgres dir: %w", err)
			}
			c.cfg.Logger.Info("private PostgreSQL relocated: the postgres user cannot reach the data dir",
				"requested", c.cfg.Dir, "dir", base)
		}
		if err := os.Chown(base, c.uid, c.gid); err != nil {
			return fmt.Errorf("postgres dir: %w", err)
		}
	}
	c.base = base
	c.data = filepath.Join(base, "data")
	c.sock = filepath.Join(base, "run")
	if err := os.MkdirAll(c.sock, 0o700); err != nil {
		return fmt.Errorf("postgres socket dir: %w", err)
	}
	if c.cred != nil {
		if err := os.Chown(c.sock, c.uid, c.gid); err != nil {
			return fmt.Errorf("postgres socket dir: %w", err)
		}
	}
	return nil
}

// mkdirOwned creates dir (and its parents) with perm; directories it creates
// are given to the postgres user.
func (c *Cluster) mkdirOwned(dir string, perm os.FileMode) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, perm); err != nil {
		return fmt.Errorf("postgres dir: %w", err)
	}
	if err := os.Chown(dir, c.uid, c.gid); err != nil {
		return fmt.Errorf("postgres dir: %w", err)
	}
	return nil
}

// reachable reports whether the postgres user can traverse every directory
// from / to dir (checked by the permission bits, as root cannot tell by
// trying).
func (c *Cluster) reachable(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return false
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return false
		}
		mode := fi.Mode().Perm()
		switch {
		case int(st.Uid) == c.uid:
			if mode&0o100 == 0 {
				return false
			}
		case int(st.Gid) == c.gid:
			if mode&0o010 == 0 {
				return false
			}
		default:
			if mode&0o001 == 0 {
				return false
			}
		}
		if d == "/" {
			return true
		}
	}
}

func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.cfg.BinDir, name), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	cmd.Dir = "/"
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd
}

func (c *Cluster) run(ctx context.Context, name string, args ...string) error {
	cmd := c.command(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(out.String()))
	}
	return nil
}

func (c *Cluster) start(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(c.data, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(c.data, 0o700); err != nil {
			return fmt.Errorf("postgres data dir: %w", err)
		}
		if c.cred != nil {
			if err := os.Chown(c.data, c.uid, c.gid); err != nil {
				return fmt.Errorf("postgres data dir: %w", err)
			}
		}
		c.cfg.Logger.Info("initialising private PostgreSQL", "dir", c.data)
		if err := c.run(ctx, "initdb", "-D", c.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"); err != nil {
			return err
		}
	}
	if pm, ok := c.postmaster(); ok {
		// Adopt the server already running on this data directory, on
		// whatever socket and port it was started with.
		c.sock, c.port = pm.sockDir, pm.port
		if err := c.waitReady(ctx, 30*time.Second); err != nil {
			return fmt.Errorf("adopt running PostgreSQL (pid %d): %w", pm.pid, err)
		}
		c.adopted = true
		c.cfg.Logger.Info("adopted a running private PostgreSQL", "dir", c.data, "pid", pm.pid)
		return nil
	}
	c.sock, c.port = filepath.Join(c.base, "run"), c.cfg.Port
	opts := []string{"-k", shellQuote(c.sock), "-p", strconv.Itoa(c.port),
		"-c", "listen_addresses=" + shellQuote(c.cfg.ListenTCP),
		"-c", "max_connections=300", "-c", "unix_socket_permissions=0700"}
	if c.cfg.Fast {
		opts = append(opts, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	logFile := filepath.Join(c.base, "postgres.log")
	if err := c.run(ctx, "pg_ctl", "-D", c.data, "-l", logFile, "-w", "-t", "60", "-o", strings.Join(opts, " "), "start"); err != nil {
		return fmt.Errorf("start private PostgreSQL (log %s): %w", logFile, err)
	}
	c.cfg.Logger.Info("private PostgreSQL started", "dir", c.data, "socket", c.sock, "port", c.port)
	return c.waitReady(ctx, 60*time.Second)
}

// shellQuote quotes s for the shell pg_ctl starts the server with.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// postmasterInfo is what postmaster.pid says about a running server.
type postmasterInfo struct {
	pid     int
	port    int
	sockDir string
}

// postmaster reads postmaster.pid and reports the server it names if that
// process is alive. Its lines are: pid, data dir, start time, port, socket
// directory, listen address, shared memory key, status.
func (c *Cluster) postmaster() (postmasterInfo, bool) {
	b, err := os.ReadFile(filepath.Join(c.data, "postmaster.pid"))
	if err != nil {
		return postmasterInfo{}, false
	}
	lines := strings.Split(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return postmasterInfo{}, false
	}
	pm := postmasterInfo{pid: pid, port: c.cfg.Port, sockDir: filepath.Join(c.base, "run")}
	if len(lines) > 4 {
		if p, err := strconv.Atoi(strings.TrimSpace(lines[3])); err == nil && p > 0 {
			pm.port = p
		}
		if d := strings.TrimSpace(lines[4]); d != "" {
			pm.sockDir = d
		}
	}
	return pm, true
}

// running reports whether postmaster.pid names a live process.
func (c *Cluster) running() bool {
	_, ok := c.postmaster()
	return ok
}

func (c *Cluster) waitReady(ctx context.Context, limit time.Duration) error {
	// A poll of a local server that is starting, not a backoff: a steady
	// short interval, bounded by limit.
	var last error
	err := retry.Do(ctx, retry.WithMaxDuration(limit, retry.NewConstant(100*time.Millisecond)), func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(cctx, c.URL("postgres"))
		if err == nil {
			err = conn.Ping(cctx)
			_ = conn.Close(cctx) // a probe: the ping is the answer
		}
		last = err
		return retry.RetryableError(err)
	})
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("private PostgreSQL not ready within %v: %w", limit, last)
}

func (c *Cluster) createDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(ctx) }() // the statements' errors are the ones that count
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pe interface{ SQLState() string }
	if errors.As(err, &pe) && pe.SQLState() == "42P04" { // created meanwhile
		return nil
	}
	return err
}

// URL is a pgx-compatible connection URL for database db over the unix
// socket: postgres://postgres@/DB?host=SOCKDIR&port=PORT&sslmode=disable.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@/%s?host=%s&port=%d&sslmode=disable", url.PathEscape(db), strings.ReplaceAll(url.QueryEscape(c.sock), "%2F", "/"), c.port)
}

// DataDir is the cluster's PGDATA (under /var/lib/testum when relocated).
func (c *Cluster) DataDir() string { return c.data }

// Stop shuts the cluster down: fast, or immediate once ctx is done. A
// cluster adopted from another process is left running.
func (c *Cluster) Stop(ctx context.Context) error {
	mode := "fast"
	if ctx.Err() != nil {
		mode = "immediate"
		ctx = context.Background()
	}
	if c.adopted {
		return nil // it belongs to the process that started it
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if !c.running() {
		return nil
	}
	return c.run(ctx, "pg_ctl", "-D", c.data, "-m", mode, "-w", "-t", "55", "stop")
}

// Restart stops and starts the cluster on the same data.
func (c *Cluster) Restart(ctx context.Context) error {
	c.adopted = false
	if err := c.Stop(ctx); err != nil {
		return err
	}
	return c.start(ctx)
}
