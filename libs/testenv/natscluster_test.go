package testenv_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/testum/testum/libs/testenv"
)

// TestNATSClusterSurvivesNodeFailures: an R3 stream on the 3-node cluster
// keeps its messages and gets a new leader when its leader is killed,
// paused and restarted.
func TestNATSClusterSurvivesNodeFailures(t *testing.T) {
	t.Parallel()
	c := testenv.StartNATSCluster(t)
	if got := len(c.URLs()); got != 3 {
		t.Fatalf("%d client URLs, want 3", got)
	}
	js, err := jetstream.New(c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "HARNESS", Subjects: []string{"harness.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	publish := func(n int) {
		t.Helper()
		for range n {
			if _, err := js.Publish(ctx, "harness.x", []byte("m")); err != nil {
				t.Fatalf("publish: %v", err)
			}
		}
	}
	publish(5)

	c.WaitCurrent(t, "HARNESS")
	first := c.StreamLeader(t, "HARNESS")
	c.Kill(t, first)
	if c.Nodes[first].Running() {
		t.Fatalf("%s still running after Kill", c.Nodes[first].Name)
	}
	if next := c.StreamLeader(t, "HARNESS"); next == first {
		t.Fatalf("killed node %d still leads the stream", first)
	}
	publish(5)
	c.Restart(t, first)
	c.WaitJetStream(t)

	c.WaitCurrent(t, "HARNESS") // the restarted node caught up
	paused := c.StreamLeader(t, "HARNESS")
	c.Pause(t, paused)
	if next := c.StreamLeader(t, "HARNESS"); next == paused {
		t.Fatalf("paused node %d still leads the stream", paused)
	}
	if meta := c.WaitJetStream(t); meta == paused {
		t.Fatalf("paused node %d leads the meta group", paused)
	}
	publish(5)
	c.Resume(t, paused)
	c.WaitJetStream(t)

	s, err := js.Stream(ctx, "HARNESS")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 15 {
		t.Fatalf("stream holds %d messages, want 15", n)
	}
}
