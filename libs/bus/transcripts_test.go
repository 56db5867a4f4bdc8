package bus

import (
	"testing"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/testenv"
)

// TestLastHostMessages: the last message of each host of one run, not the
// run's done nor another run's, and no consumer left behind.
func TestLastHostMessages(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t)
	_, js := srv.JetStream(t)
	ctx := t.Context()
	if err := EnsureStreams(ctx, js, StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	run, other := uuid.New(), uuid.New()
	if last, err := LastHostMessages(ctx, js, run); err != nil || len(last) != 0 {
		t.Fatalf("a run without messages: %v, %v", last, err)
	}
	for _, m := range []OutputMsg{
		{Run: run, Idx: 0, Type: TypeStatus, Host: "h0", Seq: 1, Attempt: 1, State: "running", Data: []byte("running")},
		{Run: run, Idx: 1, Type: TypeStatus, Host: "h1", Seq: 1, Attempt: 1, State: "running", Data: []byte("running")},
		{Run: run, Idx: 0, Type: TypeStdout, Host: "h0", Seq: 2, Attempt: 1, Data: []byte("out\n")},
		{Run: run, Idx: 1, Type: TypeExit, Host: "h1", Seq: 2, Attempt: 1, State: "ok", Data: []byte("0")},
		{Run: run, Idx: 1, Type: TypeStatus, Host: "h1", Seq: 3, Attempt: 1, State: "ok", Data: []byte("ok")},
		{Run: other, Idx: 0, Type: TypeStatus, Host: "x0", Seq: 1, Attempt: 1, State: "running", Data: []byte("running")},
		{Run: run, Idx: RunLevel, Type: TypeDone, State: "succeeded", Data: []byte("succeeded")},
	} {
		if err := PublishOutput(ctx, js, m); err != nil {
			t.Fatal(err)
		}
	}
	last, err := LastHostMessages(ctx, js, run)
	if err != nil {
		t.Fatal(err)
	}
	if len(last) != 2 || last[0].Type != TypeStdout || last[0].Seq != 2 ||
		last[1].Type != TypeStatus || last[1].State != "ok" || last[1].Seq != 3 || last[1].Attempt != 1 {
		t.Fatalf("last messages %+v", last)
	}
	s, err := js.Stream(ctx, StreamOutput)
	if err != nil {
		t.Fatal(err)
	}
	for name := range s.ListConsumers(ctx).Info() {
		t.Errorf("consumer %s left behind", name.Name)
	}
}
