package bus

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/testum/testum/libs/testenv"
)

// TestPublishRidesOutALeaderElection: a task, a run and a transcript message
// published right after their stream's leader was killed, while the stream
// elects another (seconds, in which NATS answers "no responders"), are
// stored once, when the new leader is there, instead of failing.
func TestPublishRidesOutALeaderElection(t *testing.T) {
	t.Parallel()
	cluster := testenv.StartNATSCluster(t)
	js, err := jetstream.New(cluster.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := EnsureStreams(ctx, js, StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	run := uuid.New()
	for _, c := range []struct {
		stream  string
		subject string
		publish func(context.Context) error
	}{
		{StreamTasks, TaskSubject(run, 3), func(ctx context.Context) error {
			return PublishTask(ctx, js, TaskMsg{RunID: run, Idx: 3, Attempt: 1})
		}},
		{StreamOutput, OutputSubject(run, 3), func(ctx context.Context) error {
			return PublishOutput(ctx, js, OutputMsg{Run: run, Idx: 3, Type: TypeStdout, Host: "h3", Seq: 1, Attempt: 1, Data: []byte("x\n")})
		}},
		{StreamRuns, RunSubject(run), func(ctx context.Context) error {
			return PublishRun(ctx, js, run, RunMsgID(run, ""))
		}},
	} {
		cluster.WaitJetStream(t)
		cluster.WaitCurrent(t, c.stream)
		leader := cluster.StreamLeader(t, c.stream)
		cluster.Kill(t, leader)
		began := time.Now()
		pctx, pcancel := context.WithTimeout(ctx, time.Minute)
		err := c.publish(pctx)
		pcancel()
		if err != nil {
			t.Fatalf("publish to %s after killing its leader %s: %v", c.stream, cluster.Nodes[leader].Name, err)
		}
		t.Logf("%s: published %s after its leader was killed", c.stream, time.Since(began).Round(time.Millisecond))
		s, err := js.Stream(ctx, c.stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(c.subject))
		if err != nil {
			t.Fatal(err)
		}
		if n := info.State.Subjects[c.subject]; n != 1 {
			t.Errorf("%s holds %d copies of the message, want 1", c.stream, n)
		}
		cluster.Restart(t, leader)
	}
}
