package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/logstore"
	"github.com/testum/testum/libs/testenv"
)

// streamReplicas reads the replicas of testum's streams.
func streamReplicas(t *testing.T, js jetstream.JetStream) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := map[string]int{}
	for _, name := range []string{bus.StreamRuns, bus.StreamTasks, bus.StreamOutput} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		out[name] = s.CachedInfo().Config.Replicas
	}
	return out
}

func wantStreamReplicas(t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	for name, r := range streamReplicas(t, js) {
		if r != n {
			t.Errorf("%s has %d replicas, want %d", name, r, n)
		}
	}
}

// runEcho runs echo on the hosts and checks that every host answered.
func (s *server) runEcho(t *testing.T, ids []int64, word string) {
	t.Helper()
	id := s.startRun(t, map[string]any{"command": "echo " + word, "targets": map[string]any{"platform_ids": ids}, "timeout": 30})
	msgs := s.wsCollect(t, id, 0, 0)
	if run := s.waitRun(t, id); run.State != "succeeded" {
		t.Fatalf("run %s: %s, want succeeded: %+v", id, run.State, run.Hosts)
	}
	out := hostOutput(msgs, "stdout")
	if len(out) != len(ids) {
		t.Fatalf("output of %d hosts, want %d: %v", len(out), len(ids), out)
	}
	for h, o := range out {
		if o != word+"\n" {
			t.Errorf("%s stdout %q, want %q", h, o, word+"\n")
		}
	}
}

// TestServeOnANATSCluster: testum against a real 3-node JetStream cluster
// creates R3 streams by default and runs end to end; an executor started
// with TESTUM_STREAM_REPLICAS=1 starts, logs what differs and leaves every
// stream R3; testum migrate --streams changes them all, and runs still work.
func TestServeOnANATSCluster(t *testing.T) {
	t.Parallel()
	cluster := testenv.StartNATSCluster(t)
	sshd := testenv.StartSSHD(t)
	dataDir := t.TempDir()
	s := startServe(t, map[string]string{"NATS_URL": cluster.URL(), "TESTUM_DATA_DIR": dataDir})
	js, err := jetstream.New(cluster.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	wantStreamReplicas(t, js, 3)

	var ids []int64
	for i := range 3 {
		ids = append(ids, s.createPlatform(t, map[string]any{"name": fmt.Sprintf("c%d", i), "host": sshd.Addr(40 + i),
			"port": sshd.Port, "username": sshd.PasswordUser.Name, "auth_method": "password", "password": sshd.PasswordUser.Password}))
	}
	s.runEcho(t, ids, "replicated")

	// A second executor of the same deployment, configured for R1.
	env := map[string]string{
		"DATABASE_URL": s.DB, "NATS_URL": cluster.URL(), "TESTUM_DATA_DIR": dataDir,
		"TESTUM_STREAM_REPLICAS": "1", "TESTUM_LOG_LEVEL": "warn", "TESTUM_HEARTBEAT": "500ms", "TESTUM_DEAD_AFTER": "3s",
	}
	getenv := func(k string) string { return env[k] }
	ctx, cancel := context.WithCancel(context.Background())
	out, logs := newURLWatcher(), newURLWatcher()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"executor"}, getenv, strings.NewReader(""), out, logs) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("executor ended with %v\n%s", err, logs.String())
			}
		case <-time.After(waitLimit):
			t.Errorf("executor did not stop within %s", waitLimit)
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(waitLimit)
	for !executorIDRe.MatchString(out.String()) {
		select {
		case err := <-done:
			t.Fatalf("executor with TESTUM_STREAM_REPLICAS=1 did not start: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("executor printed no id within %s:\n%s", waitLimit, logs.String())
		}
		time.Sleep(50 * time.Millisecond) // polling the process output
	}
	wantStreamReplicas(t, js, 3)
	for _, name := range []string{bus.StreamRuns, bus.StreamTasks, bus.StreamOutput} {
		n := strings.Count(logs.String(), "stream="+name+" replicas=3 configured_replicas=1")
		if n != 1 {
			t.Errorf("%d log lines for %s with both replica counts, want 1:\n%s", n, name, logs.String())
		}
	}
	stop()

	// The explicit migration changes them all.
	var mout, merr strings.Builder
	menv := map[string]string{"NATS_URL": cluster.URL(), "TESTUM_STREAM_REPLICAS": "1", "TESTUM_LOG_LEVEL": "warn"}
	if err := run(context.Background(), []string{"migrate", "--streams", "--recreate-output"}, func(k string) string { return menv[k] },
		strings.NewReader(""), &mout, &merr); err != nil {
		t.Fatalf("migrate --streams: %v\n%s%s", err, mout.String(), merr.String())
	}
	if !strings.Contains(mout.String(), "changed TESTUM_TASKS replicas 3 → 1") {
		t.Errorf("migrate printed %q, want the changes", mout.String())
	}
	wantStreamReplicas(t, js, 1)
	s.runEcho(t, ids, "migrated")
}

// TestLogBucketOnANATSCluster: the split roles' log bucket on a real
// 3-node cluster gets 3 replicas by default; a process configured with
// TESTUM_STREAM_REPLICAS=1 opens it, logs both counts and leaves it R3.
// testum migrate --streams changes it with the streams, down and up, all or
// none, and keeps its logs.
func TestLogBucketOnANATSCluster(t *testing.T) {
	t.Parallel()
	cluster := testenv.StartNATSCluster(t)
	nc := cluster.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	open := func(env map[string]string) string {
		t.Helper()
		var c Config
		if err := c.load("executor", nil, func(k string) string { return env[k] }, io.Discard, roleGroups["executor"]...); err != nil {
			t.Fatal(err)
		}
		var logs strings.Builder
		if _, err := openLogStore(t.Context(), &c, nc, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
			t.Fatalf("open the log store: %v\n%s", err, logs.String())
		}
		return logs.String()
	}
	bucketReplicas := func() int {
		t.Helper()
		s, err := js.Stream(t.Context(), "OBJ_"+logstore.DefaultNATSBucket)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config.Replicas
	}

	open(nil)
	if r := bucketReplicas(); r != 3 {
		t.Fatalf("log bucket created with %d replicas, want 3", r)
	}
	logs := open(map[string]string{"TESTUM_STREAM_REPLICAS": "1"})
	if r := bucketReplicas(); r != 3 {
		t.Errorf("log bucket has %d replicas after a start configured for 1, want 3 kept", r)
	}
	if !strings.Contains(logs, "bucket="+logstore.DefaultNATSBucket+" replicas=3 configured_replicas=1") {
		t.Errorf("no log line with both replica counts:\n%s", logs)
	}

	// A log in the bucket, to be read after every migration.
	var c Config
	if err := c.load("executor", nil, func(string) string { return "" }, io.Discard, roleGroups["executor"]...); err != nil {
		t.Fatal(err)
	}
	st, err := openLogStore(t.Context(), &c, nc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	const key, body = "runs/migrated/0.log", "kept across migrations\n"
	if err := st.Put(t.Context(), key, strings.NewReader(body), int64(len(body))); err != nil {
		t.Fatal(err)
	}
	wantLog := func(when string) {
		t.Helper()
		r, err := st.Get(t.Context(), key)
		if err != nil {
			t.Fatalf("%s: get the log: %v", when, err)
		}
		defer r.Close()
		if b, err := io.ReadAll(r); err != nil || string(b) != body {
			t.Fatalf("%s: the log reads %q, %v; want %q", when, b, err, body)
		}
	}
	migrate := func(env map[string]string, args ...string) (string, error) {
		t.Helper()
		env["NATS_URL"], env["TESTUM_LOG_LEVEL"] = cluster.URL(), "warn"
		var out, errs strings.Builder
		err := run(t.Context(), append([]string{"migrate", "--streams"}, args...), func(k string) string { return env[k] },
			strings.NewReader(""), &out, &errs)
		return out.String() + errs.String(), err
	}

	// Down to 1, with the streams (the output stream's persist mode
	// differs between R1 and R3: it is recreated).
	out, err := migrate(map[string]string{"TESTUM_STREAM_REPLICAS": "1"}, "--recreate-output")
	if err != nil {
		t.Fatalf("migrate --streams to 1: %v\n%s", err, out)
	}
	if !strings.Contains(out, "changed "+logstore.DefaultNATSBucket+" replicas 3 → 1\n") {
		t.Errorf("migrate to 1 printed %q, want the bucket's change", out)
	}
	if r := bucketReplicas(); r != 1 {
		t.Errorf("log bucket has %d replicas after migrate --streams to 1, want 1", r)
	}
	wantStreamReplicas(t, js, 1)
	wantLog("after migrating to 1")

	// All or none: a stream change NATS refuses leaves the bucket as well.
	out, err = migrate(map[string]string{})
	if err == nil || !strings.Contains(err.Error(), "nothing changed") {
		t.Fatalf("migrate --streams to 3 without --recreate-output: %v, want nothing changed\n%s", err, out)
	}
	if r := bucketReplicas(); r != 1 {
		t.Errorf("log bucket has %d replicas after a refused migration, want 1 kept", r)
	}
	wantStreamReplicas(t, js, 1)

	// Up to the default (3 on this cluster), then nothing left to do.
	out, err = migrate(map[string]string{}, "--recreate-output")
	if err != nil {
		t.Fatalf("migrate --streams to the default: %v\n%s", err, out)
	}
	if !strings.Contains(out, "changed "+logstore.DefaultNATSBucket+" replicas 1 → 3\n") {
		t.Errorf("migrate to the default printed %q, want the bucket's change", out)
	}
	if r := bucketReplicas(); r != 3 {
		t.Errorf("log bucket has %d replicas after migrate --streams to the default, want 3", r)
	}
	wantStreamReplicas(t, js, 3)
	cluster.WaitCurrent(t, "OBJ_"+logstore.DefaultNATSBucket)
	wantLog("after migrating to 3")
	out, err = migrate(map[string]string{})
	if err != nil || !strings.Contains(out, "streams and log bucket already match the configuration") {
		t.Errorf("migrate --streams again: %v, printed %q; want nothing to change", err, out)
	}
}
