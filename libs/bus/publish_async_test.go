package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/testum/testum/libs/testenv"
)

// awaitAck waits (bounded) for an asynchronous publish's outcome.
func awaitAck(t *testing.T, f jetstream.PubAckFuture) (*jetstream.PubAck, error) {
	t.Helper()
	select {
	case a := <-f.Ok():
		return a, nil
	case err := <-f.Err():
		return nil, err
	case <-time.After(2 * AsyncAckTimeout): // a hang guard only: the ack times out before
		t.Fatal("no outcome for an asynchronous publish")
		return nil, nil
	}
}

// An asynchronous transcript message carries its id: published again it
// is a duplicate, stored once; with no stream to store it, the future
// says so; without an id it is refused.
func TestPublishOutputAsync(t *testing.T) {
	srv := testenv.NATS(t)
	nc, js := srv.JetStream(t)
	async, err := NewAsyncPublisher(nc)
	if err != nil {
		t.Fatal(err)
	}
	run := uuid.New()
	m := OutputMsg{Run: run, Idx: 3, Type: TypeStdout, Host: "h3", Seq: 1, Attempt: 1, Data: []byte("x\n")}

	f, err := PublishOutputAsync(async, m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := awaitAck(t, f); !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("without a stream: %v, want %v", err, jetstream.ErrNoStreamResponse)
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := EnsureStreams(ctx, js, StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	for i, dup := range []bool{false, true} {
		f, err := PublishOutputAsync(async, m)
		if err != nil {
			t.Fatal(err)
		}
		a, err := awaitAck(t, f)
		if err != nil || a.Duplicate != dup {
			t.Fatalf("publish %d: %+v, %v; want duplicate %v", i, a, err, dup)
		}
	}
	s, err := js.Stream(ctx, StreamOutput)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.GetLastMsgForSubject(ctx, m.Subject())
	if err != nil || got.Sequence != 1 || got.Header.Get("Nats-Msg-Id") != m.MsgID() {
		t.Fatalf("stored %+v, %v; want one message with id %s", got, err, m.MsgID())
	}

	if _, err := PublishOutputAsync(async, OutputMsg{Run: run, Idx: 3, Type: TypeStatus, Seq: 2}); err == nil {
		t.Fatal("a message without an id was published")
	}
}
