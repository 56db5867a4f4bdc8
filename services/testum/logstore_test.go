package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/logstore"
	"github.com/testum/testum/libs/secrets"
	"github.com/testum/testum/libs/testenv"
)

var roleGroups = map[string][]string{
	"serve":    serveGroups,
	"gateway":  {"db", "nats", "keys", "logs", "gateway", "targets"},
	"executor": {"db", "nats", "keys", "logs", "targets", "executor"},
}

// TestLogStoreChoice: the log store each command picks, and the settings it
// refuses, each with one line naming what to configure.
func TestLogStoreChoice(t *testing.T) {
	t.Parallel()
	minio := map[string]string{"MINIO_ENDPOINT": "127.0.0.1:9000", "MINIO_ACCESS_KEY": "a", "MINIO_SECRET_KEY": "s"}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	cases := []struct {
		name, cmd string
		env       map[string]string
		want      string // the kind, or a part of the error
		fails     bool
	}{
		{"serve keeps the data dir", "serve", nil, logStoreDisk, false},
		{"gateway shares NATS", "gateway", nil, logStoreNATS, false},
		{"executor shares NATS", "executor", nil, logStoreNATS, false},
		{"MinIO wins for serve", "serve", minio, logStoreS3, false},
		{"MinIO wins for an executor", "executor", minio, logStoreS3, false},
		{"explicit nats for serve", "serve", map[string]string{"TESTUM_LOG_STORE": "nats"}, logStoreNATS, false},
		{"explicit disk over MinIO", "serve", with(minio, "TESTUM_LOG_STORE", "disk"), logStoreDisk, false},
		{"explicit nats over MinIO", "executor", with(minio, "TESTUM_LOG_STORE", "nats"), logStoreNATS, false},
		{"gateway on disk", "gateway", map[string]string{"TESTUM_LOG_STORE": "disk"}, logStoreDisk, false},
		{"executor on a shared disk", "executor", map[string]string{"TESTUM_LOG_STORE": "disk", "TESTUM_LOG_DIR_SHARED": "true"}, logStoreDisk, false},
		{"executor on its own disk", "executor", map[string]string{"TESTUM_LOG_STORE": "disk"}, "TESTUM_LOG_DIR_SHARED=true", true},
		{"executor names its dir", "executor", map[string]string{"TESTUM_LOG_STORE": "disk", "TESTUM_LOG_DIR": "/srv/logs"}, "keep logs in /srv/logs", true},
		{"unknown store", "serve", map[string]string{"TESTUM_LOG_STORE": "tape"}, `TESTUM_LOG_STORE="tape"`, true},
		{"s3 without endpoint", "executor", map[string]string{"TESTUM_LOG_STORE": "s3"}, "needs MINIO_ENDPOINT", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			err := c.load(tc.cmd, nil, func(k string) string { return tc.env[k] }, io.Discard, roleGroups[tc.cmd]...)
			if tc.fails {
				if err == nil {
					t.Fatalf("load succeeded with log store %s", c.logStoreKind())
				}
				if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
					t.Fatalf("error %q: want one line containing %q", msg, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.logStoreKind(); got != tc.want {
				t.Fatalf("log store %s, want %s", got, tc.want)
			}
		})
	}
}

// TestOpenLogStoreNATS: the split roles' default store is the object store
// on their NATS, created with the streams' replicas.
func TestOpenLogStoreNATS(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t)
	var c Config
	if err := c.load("executor", nil, func(string) string { return "" }, io.Discard, roleGroups["executor"]...); err != nil {
		t.Fatal(err)
	}
	nc, js := srv.JetStream(t)
	if err := bus.EnsureStreams(t.Context(), js, c.streamsConfig()); err != nil {
		t.Fatal(err)
	}
	tasks, err := js.Stream(t.Context(), bus.StreamTasks)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	s, err := openLogStore(t.Context(), &c, nc, log)
	if err != nil {
		t.Fatal(err)
	}
	ns, ok := s.(*logstore.NATS)
	if !ok {
		t.Fatalf("store %T, want *logstore.NATS", s)
	}
	if n, err := ns.Replicas(t.Context()); err != nil || n != tasks.CachedInfo().Config.Replicas {
		t.Fatalf("replicas %d, %v; want the streams' %d", n, err, tasks.CachedInfo().Config.Replicas)
	}
	if _, err := openLogStore(t.Context(), &c, nil, log); err == nil {
		t.Fatal("the NATS log store opened without a connection")
	}
}

// TestExecutorRefusesUnreadableLogs: `testum executor` with a log store on
// its own disk exits at once with status 1 and one line saying what to
// configure, before it connects to anything.
func TestExecutorRefusesUnreadableLogs(t *testing.T) {
	t.Parallel()
	fernet, err := secrets.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, testumBinary(t), "executor")
	// Addresses where nothing listens: the refusal comes first.
	cmd.Env = []string{"TESTUM_DATA_DIR=" + dir, "TESTUM_LOG_STORE=disk", "FERNET_KEY=" + fernet,
		"SECRET_KEY=test-secret-key-0123456789abcdef0123456789",
		"DATABASE_URL=postgres://u@127.0.0.1:1/db", "NATS_URL=nats://127.0.0.1:1"}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("executor exited with %v, want status 1:\n%s", err, out)
	}
	want := fmt.Sprintf("testum: testum executor would keep logs in %s/logs, where no gateway reads them: ", dir)
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 ||
		!strings.HasPrefix(lines[0], want) || !strings.Contains(lines[0], "TESTUM_LOG_STORE=nats") {
		t.Fatalf("executor printed:\n%s\nwant one line starting %q", out, want)
	}
}

// TestSplitRolesServeEveryLog: two gateways and an executor, each with a data
// dir of its own and no MinIO: either gateway serves every host log after
// the run, a multi-MiB one included, from the object store on their NATS.
func TestSplitRolesServeEveryLog(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	srv := testenv.NATS(t)
	fernet, err := secrets.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]string{
		"DATABASE_URL": testenv.Postgres(t), "NATS_URL": srv.URL, "FERNET_KEY": fernet,
		"SECRET_KEY": "test-secret-key-0123456789abcdef0123456789", "TESTUM_LOG_LEVEL": "warn",
		"TESTUM_LISTEN": "127.0.0.1:0", "ADMIN_USERNAME": testAdmin, "ADMIN_PASSWORD": testAdminKey,
	}
	dirs := map[string]string{}
	start := func(name, role string) *process {
		env := map[string]string{"TESTUM_DATA_DIR": t.TempDir()}
		for k, v := range base {
			env[k] = v
		}
		dirs[name] = env["TESTUM_DATA_DIR"]
		return startProcess(t, env, role)
	}
	gw1 := &server{URL: start("gateway 1", "gateway").waitURL(t)}
	gw1.login(t)
	start("executor", "executor").waitExecutorID(t)
	gw2 := &server{URL: start("gateway 2", "gateway").waitURL(t)}
	gw2.login(t)
	gw1.api, gw2.api = newAPI(t, gw1.URL), newAPI(t, gw2.URL)

	// seq 1 600000 prints about 4.5 MB: 35 chunks of the object store.
	ids := gw1.fleet(t, sshd, "split", 2, 720, nil)
	run := gw1.waitRun(t, gw1.startRun(t, map[string]any{
		"command": `if [ "$(echo $SSH_CONNECTION | cut -d' ' -f3)" = "` + sshd.Addr(720) + `" ]; then seq 1 600000; else echo small; fi`,
		"targets": map[string]any{"platform_ids": ids}, "timeout": 120,
	}))
	if run.State != "succeeded" {
		t.Fatalf("run %s: %+v", run.State, hostsOf(run))
	}
	big, err := exec.Command("seq", "1", "600000").Output()
	if err != nil {
		t.Fatal(err)
	}
	id := run.Id
	for _, gw := range []*server{gw1, gw2} {
		for i, h := range hostsOf(run) {
			want := "small\n"
			if h.Address == fmt.Sprintf("%s:%d", sshd.Addr(720), sshd.Port) {
				want = string(big)
			}
			hl, err := gw.api.RunHostLogWithResponse(context.Background(), id, i, nil)
			checkStatus(t, "host log of "+h.Name+" from "+gw.URL, err, hl.StatusCode(), http.StatusOK, hl.Body[:min(len(hl.Body), 200)])
			if string(hl.Body) != want {
				t.Fatalf("%s from %s: %d bytes, want %d", h.Name, gw.URL, len(hl.Body), len(want))
			}
		}
	}
	// Nothing went to a data dir.
	for name, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "logs")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s has a logs directory (%v)", name, err)
		}
	}
}
