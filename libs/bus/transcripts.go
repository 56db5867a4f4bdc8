package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
)

// LastHostMessages returns the last transcript message of each host of run
// that has one (keyed by the host's index; the run's own done is left out),
// headers only: what a host's transcript has reached. The last stored is
// the last sent: an executor publishes a host attempt's control messages
// (status, error, exit) only once every message before them is acked, and
// nothing after them before their ack, however many chunks it otherwise
// keeps in flight.
func LastHostMessages(ctx context.Context, js jetstream.JetStream, run uuid.UUID) (map[int]OutputMsg, error) {
	cons, err := js.CreateConsumer(ctx, StreamOutput, jetstream.ConsumerConfig{
		FilterSubject: OutputFilter(run), DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy: jetstream.AckNonePolicy, HeadersOnly: true, MemoryStorage: true, Replicas: 1,
		InactiveThreshold: 30 * time.Second, // should the delete below not reach the server
	})
	if err != nil {
		return nil, fmt.Errorf("reading the last messages of run %s: %w", run, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = js.DeleteConsumer(dctx, StreamOutput, cons.CachedInfo().Name) // else gone after its inactive threshold
	}()
	out := map[int]OutputMsg{}
	for pending := cons.CachedInfo().NumPending; pending > 0; {
		batch, err := cons.Fetch(int(min(pending, 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("reading the last messages of run %s: %w", run, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			pending = md.NumPending
			o, err := DecodeOutput(m.Subject(), m.Headers(), nil)
			if err != nil || o.Idx == RunLevel {
				continue // not a host's: nothing for a transcript to reach
			}
			out[o.Idx] = o
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("reading the last messages of run %s: %w", run, err)
		}
		if got == 0 {
			return nil, fmt.Errorf("reading the last messages of run %s: %d more announced, none came", run, pending)
		}
	}
	return out, nil
}
