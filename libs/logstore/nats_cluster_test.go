package logstore_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/testum/testum/libs/logstore"
	"github.com/testum/testum/libs/testenv"
)

// leaderLossGuard bounds each read after the bucket's leader died: long
// past a leader election, far below the read's own limit, so that a read
// that waits for an answer that never comes fails here instead of hanging.
const leaderLossGuard = 2 * time.Minute

// TestNATSReadsAfterTheLeaderDies: on a 3-node cluster, an R3 bucket whose
// leader is killed is read right away, by callers with no deadline of
// their own (as the gateway's downloads): Get and Stat answer with the
// objects once the other two nodes have a leader again, instead of waiting
// for the answer to a request that the dead node never gives.
func TestNATSReadsAfterTheLeaderDies(t *testing.T) {
	t.Parallel()
	cluster := testenv.StartNATSCluster(t)
	js, err := jetstream.New(cluster.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	s, err := logstore.NewNATS(t.Context(), js, logstore.NATSConfig{Bucket: "LOGS_LEADER", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: 8 chunks
	objects := map[string][]byte{"runs/1/0.log": big, "runs/1/1.log": []byte("small\n")}
	for k, b := range objects {
		if err := s.Put(t.Context(), k, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	cluster.WaitCurrent(t, "OBJ_LOGS_LEADER")
	leader := cluster.StreamLeader(t, "OBJ_LOGS_LEADER")
	cluster.Kill(t, leader)

	guard := func(what string, fn func() error) {
		t.Helper()
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- fn() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s after the leader was killed: %v", what, err)
			}
			t.Logf("%s answered %s after the leader was killed", what, time.Since(start).Round(time.Millisecond))
		case <-time.After(leaderLossGuard):
			t.Fatalf("%s: no answer %s after the leader was killed", what, leaderLossGuard)
		}
	}
	for k, want := range objects {
		guard("Get "+k, func() error {
			r, err := s.Get(context.Background(), k)
			if err != nil {
				return err
			}
			defer r.Close()
			got, err := io.ReadAll(r)
			if err != nil {
				return err
			}
			if !bytes.Equal(got, want) {
				return fmt.Errorf("read %d bytes, want %d", len(got), len(want))
			}
			return nil
		})
		guard("Stat "+k, func() error {
			info, err := s.Stat(context.Background(), k)
			if err == nil && info.Size != int64(len(want)) {
				err = fmt.Errorf("size %d, want %d", info.Size, len(want))
			}
			return err
		})
	}
}
