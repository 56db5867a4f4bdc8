package bus

import (
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// AsyncAckTimeout bounds the wait for the acknowledgement of one message
// published without waiting: past it the message counts as failed (the
// stream may still have stored it; a republish with its id is then a
// duplicate).
const AsyncAckTimeout = 5 * time.Second

// asyncMaxPending bounds the acknowledgements one asynchronous publisher
// waits for at once, over every transcript. Each transcript bounds its
// own; this only keeps the client's table of pending acks bounded.
const asyncMaxPending = 1 << 16

// asyncStallWait is how long a publish waits for room under
// asyncMaxPending before it fails.
const asyncStallWait = time.Second

// AsyncPublisher is the part of a JetStream context that asynchronous
// publishing needs; jetstream.JetStream has it.
type AsyncPublisher interface {
	PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// NewAsyncPublisher returns a JetStream context of nc for
// PublishOutputAsync: its acknowledgements time out after AsyncAckTimeout,
// so that a message sent while a stream's leader dies fails instead of
// waiting for ever.
func NewAsyncPublisher(nc *nats.Conn) (jetstream.JetStream, error) {
	if nc == nil {
		return nil, errors.New("bus: asynchronous publishing needs a NATS connection")
	}
	return jetstream.New(nc, jetstream.WithPublishAsyncTimeout(AsyncAckTimeout),
		jetstream.WithPublishAsyncMaxPending(asyncMaxPending))
}

// PublishOutputAsync sends a transcript message with its message id and
// returns without waiting for the acknowledgement, which the future
// reports (js should come from NewAsyncPublisher, which bounds the wait).
// Messages sent one after the other from one goroutine reach the stream in
// that order. "No responders" (a stream electing a leader) is not retried
// by the client: it is the future's error, for the caller to republish
// with its own backoff, in order. A message without an id is refused: a
// republish of it could be stored twice.
func PublishOutputAsync(js AsyncPublisher, o OutputMsg) (jetstream.PubAckFuture, error) {
	id := o.MsgID()
	if id == "" {
		return nil, errors.New("bus: an asynchronous transcript message needs a message id (a host attempt's)")
	}
	return js.PublishMsgAsync(o.Encode(), jetstream.WithMsgID(id), jetstream.WithRetryAttempts(0),
		jetstream.WithStallWait(asyncStallWait))
}
