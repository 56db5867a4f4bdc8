package gateway

import (
	"context"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/testum/testum/libs/bus"
)

// runPublisher is how the runs service reaches the executors: the gateway's
// NATS connection and the messaging contract of libs/bus.
type runPublisher struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func (p runPublisher) RunAccepted(ctx context.Context, run uuid.UUID) error {
	return bus.PublishRun(ctx, p.js, run, bus.RunMsgID(run, ""))
}

func (p runPublisher) RunCancel(_ context.Context, run uuid.UUID) error {
	return bus.PublishCancel(p.nc, run)
}

// RunWake publishes the run again under a message id of its own, so that
// JetStream's dedupe window does not swallow it.
func (p runPublisher) RunWake(ctx context.Context, run uuid.UUID) error {
	return bus.PublishRun(ctx, p.js, run, bus.RunMsgID(run, "cancel"))
}
