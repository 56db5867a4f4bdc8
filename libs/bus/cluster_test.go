package bus

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/testum/testum/libs/testenv"
)

type streamState struct {
	replicas int
	persist  jetstream.PersistModeType
	maxAge   time.Duration
}

func streamStates(t *testing.T, ctx context.Context, js jetstream.JetStream) map[string]streamState {
	t.Helper()
	out := map[string]streamState{}
	for _, name := range []string{StreamRuns, StreamTasks, StreamOutput} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		c := s.CachedInfo().Config
		out[name] = streamState{c.Replicas, c.PersistMode, c.MaxAge}
	}
	return out
}

func wantReplicas(t *testing.T, got map[string]streamState, n int) {
	t.Helper()
	for name, s := range got {
		if s.replicas != n {
			t.Errorf("%s has %d replicas, want %d (%+v)", name, s.replicas, n, got)
		}
		wantPersist := jetstream.DefaultPersistMode
		if n == 1 && name == StreamOutput {
			wantPersist = jetstream.AsyncPersistMode
		}
		if s.persist != wantPersist {
			t.Errorf("%s persist mode %v, want %v", name, s.persist, wantPersist)
		}
	}
}

// TestReplicasOnASingleServer: one server outside any cluster gets R1
// streams without a probe; a configured count is taken as it is.
func TestReplicasOnASingleServer(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t)
	_, js := srv.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r, err := Replicas(ctx, js, 0); err != nil || r != 1 {
		t.Fatalf("Replicas = %d, %v; want 1", r, err)
	}
	if r, err := Replicas(ctx, js, 5); err != nil || r != 5 {
		t.Fatalf("configured: Replicas = %d, %v; want 5", r, err)
	}
	if err := EnsureStreams(ctx, js, StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	wantReplicas(t, streamStates(t, ctx, js), 1)
}

// TestStreamsOnACluster: on a 3-node cluster the streams are created R3 by
// default; a start configured for R1 keeps them R3 and says so once per
// stream; migrate is all or none and changes them down and up again; work
// flows through the migrated streams.
func TestStreamsOnACluster(t *testing.T) {
	t.Parallel()
	cluster := testenv.StartNATSCluster(t)
	js, err := jetstream.New(cluster.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	began := time.Now()
	if r, err := Replicas(ctx, js, 0); err != nil || r != 3 {
		t.Fatalf("Replicas = %d, %v; want 3", r, err)
	}
	t.Logf("the replica probe took %s", time.Since(began))
	if err := EnsureStreams(ctx, js, StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	wantReplicas(t, streamStates(t, ctx, js), 3)
	// The probe left nothing behind.
	for name := range js.StreamNames(ctx).Name() {
		if strings.HasPrefix(name, "TESTUM_REPLICAS_PROBE_") {
			t.Errorf("probe stream %s left behind", name)
		}
	}

	// A start with other settings: replicas kept, the lower max age kept,
	// one line per stream.
	var logs testenv.LogBuffer
	start := StreamsConfig{Replicas: 1, OutputMaxAge: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	if err := EnsureStreams(ctx, js, start); err != nil {
		t.Fatalf("start with TESTUM_STREAM_REPLICAS=1: %v", err)
	}
	got := streamStates(t, ctx, js)
	wantReplicas(t, got, 3)
	if got[StreamOutput].maxAge != DefaultOutputMaxAge {
		t.Errorf("output max age %s, want %s kept", got[StreamOutput].maxAge, DefaultOutputMaxAge)
	}
	for _, name := range []string{StreamRuns, StreamTasks, StreamOutput} {
		lines := logs.Lines("stream=" + name + " ")
		if len(lines) != 1 || !strings.Contains(lines[0], "replicas=3 configured_replicas=1") {
			t.Errorf("log lines of %s: %q, want one with both replica counts", name, lines)
		}
	}
	if l := logs.Lines("stream=" + StreamOutput + " "); len(l) == 1 && !strings.Contains(l[0], "max_age=24h0m0s configured_max_age=1h0m0s") {
		t.Errorf("output log line %q does not show the kept max age", l[0])
	}

	// Migrate down: the output's persist mode cannot change in place, so
	// without --recreate-output nothing changes at all.
	down := StreamsConfig{Replicas: 1}
	changes, err := MigrateStreams(ctx, js, down, false)
	if err == nil || !strings.Contains(err.Error(), "TESTUM_OUTPUT persist mode default → async") || !strings.Contains(err.Error(), "--recreate-output") {
		t.Fatalf("migrate to R1 without recreating the output: %v, %v; want a refusal naming the output's persist mode", changes, err)
	}
	if len(changes) != 0 {
		t.Errorf("refused migration changed %v", changes)
	}
	wantReplicas(t, streamStates(t, ctx, js), 3)

	if _, err := MigrateStreams(ctx, js, down, true); err != nil {
		t.Fatalf("migrate to R1: %v", err)
	}
	wantReplicas(t, streamStates(t, ctx, js), 1)

	// A start with the default settings finds R1 streams on a cluster of
	// three: it keeps them and says so.
	var defLogs testenv.LogBuffer
	if err := EnsureStreams(ctx, js, StreamsConfig{Logger: slog.New(slog.NewTextHandler(&defLogs, nil))}); err != nil {
		t.Fatalf("start with the default replicas: %v", err)
	}
	wantReplicas(t, streamStates(t, ctx, js), 1)
	if l := defLogs.Lines("replicas=1 configured_replicas=3"); len(l) != 3 {
		t.Errorf("start with the default on R1 streams logged %q, want one line per stream", l)
	}

	// And up again, to the default.
	if _, err := MigrateStreams(ctx, js, StreamsConfig{}, true); err != nil {
		t.Fatalf("migrate to the default: %v", err)
	}
	wantReplicas(t, streamStates(t, ctx, js), 3)
	if changes, err := MigrateStreams(ctx, js, StreamsConfig{}, false); err != nil || len(changes) != 0 {
		t.Fatalf("second migration: %v, %v; want nothing to do", changes, err)
	}

	// Work flows: a task published is delivered by the durable consumer,
	// also after its stream's leader was killed.
	// The consumer is looked up before the kill: a JetStream request that
	// reaches no leader is not answered and would wait for its deadline.
	cons, err := js.Consumer(ctx, StreamTasks, ConsumerExecutors)
	if err != nil {
		t.Fatal(err)
	}
	cluster.WaitCurrent(t, StreamTasks) // just scaled up: copies catch up first
	cluster.Kill(t, cluster.StreamLeader(t, StreamTasks))
	var perr error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		// Until a new leader is elected the stream does not answer.
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		_, perr = js.Publish(pctx, subjTask+"run.host", []byte("task"), jetstream.WithMsgID("run/host/1"))
		pcancel()
		if perr == nil {
			break
		}
		time.Sleep(100 * time.Millisecond) // retry interval of a publish, as executors retry
	}
	if perr != nil {
		t.Fatalf("publish a task: %v", perr)
	}
	var msg jetstream.Msg
	for deadline := time.Now().Add(time.Minute); msg == nil && time.Now().Before(deadline); {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			continue // an election in progress
		}
		for m := range batch.Messages() {
			msg = m
		}
	}
	if msg == nil || string(msg.Data()) != "task" {
		t.Fatalf("no task delivered: %v", msg)
	}
	if err := msg.Ack(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		t.Fatal(err)
	}
}
