package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher is the part of a JetStream context that publishing needs;
// jetstream.JetStream has it.
type Publisher interface {
	PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// CorePublisher is the part of a NATS connection that core publishing
// needs; *nats.Conn has it.
type CorePublisher interface {
	PublishMsg(m *nats.Msg) error
}

// RunMsg is the body of a run message.
type RunMsg struct {
	RunID uuid.UUID `json:"run_id"`
}

// Encode returns the run message ready to publish.
func (r RunMsg) Encode() *nats.Msg {
	return &nats.Msg{Subject: RunSubject(r.RunID), Data: mustJSON(r)}
}

// DecodeRun reads a run message.
func DecodeRun(data []byte) (RunMsg, error) {
	var r RunMsg
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("run message: %w", err)
	}
	return r, nil
}

// RunMsgID names the reason a run message is published (accepted, a
// cancel's wake-up, a republish): the stream's duplicate window drops a
// second message of the same reason.
func RunMsgID(run uuid.UUID, reason string) string {
	if reason == "" {
		return run.String()
	}
	return run.String() + "/" + reason
}

// PublishRun publishes a run message with the given message id.
func PublishRun(ctx context.Context, js Publisher, run uuid.UUID, msgID string) error {
	return publish(ctx, js, RunMsg{RunID: run}.Encode(), msgID)
}

// TaskMsg is the body of a host task. Everything else (command, platform,
// credential) is read from PostgreSQL so that no secret travels in NATS.
type TaskMsg struct {
	RunID   uuid.UUID `json:"run_id"`
	Idx     int       `json:"idx"`
	Attempt int       `json:"attempt"` // the start this task authorizes: 1 for the first
}

// MsgID is the Nats-Msg-Id of a task: a republished task of the same attempt
// is dropped by the stream's duplicate window.
func (t TaskMsg) MsgID() string { return fmt.Sprintf("%s/%d/%d", t.RunID, t.Idx, t.Attempt) }

// Encode returns the task ready to publish.
func (t TaskMsg) Encode() *nats.Msg {
	return &nats.Msg{Subject: TaskSubject(t.RunID, t.Idx), Data: mustJSON(t)}
}

// DecodeTask reads a task and checks that it is the task its subject names.
func DecodeTask(subject string, data []byte) (TaskMsg, error) {
	var t TaskMsg
	if err := json.Unmarshal(data, &t); err != nil {
		return t, fmt.Errorf("task message: %w", err)
	}
	run, idx, err := ParseTaskSubject(subject)
	if err != nil {
		return t, err
	}
	if run != t.RunID || idx != t.Idx {
		return t, fmt.Errorf("task message for %s/%d on subject %q", t.RunID, t.Idx, subject)
	}
	if t.Attempt < 1 {
		return t, fmt.Errorf("task message %s/%d: attempt %d, want at least 1", t.RunID, t.Idx, t.Attempt)
	}
	return t, nil
}

// PublishTask publishes a host task with its message id.
func PublishTask(ctx context.Context, js Publisher, t TaskMsg) error {
	return publish(ctx, js, t.Encode(), t.MsgID())
}

// Event kinds.
const (
	EventHost = "host"
	EventRun  = "run"
)

// Event is one state transition, published on EventSubject. It is a core
// NATS message: it wakes the run's coordinator, which also polls, so an
// event lost while nobody listened costs nothing.
type Event struct {
	RunID    uuid.UUID `json:"run_id"`
	Kind     string    `json:"kind"` // EventHost or EventRun
	Idx      int       `json:"idx,omitempty"`
	Host     string    `json:"host,omitempty"`
	State    string    `json:"state"`
	ExitCode *int      `json:"exit_code,omitempty"`
	At       time.Time `json:"at"`
}

// Encode returns the event ready to publish.
func (e Event) Encode() *nats.Msg {
	return &nats.Msg{Subject: EventSubject(e.RunID), Data: mustJSON(e)}
}

// DecodeEvent reads an event.
func DecodeEvent(data []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(data, &e); err != nil {
		return e, fmt.Errorf("event: %w", err)
	}
	return e, nil
}

// PublishEvent publishes an event on core NATS.
func PublishEvent(nc CorePublisher, e Event) error {
	m := e.Encode()
	if err := nc.PublishMsg(m); err != nil {
		return fmt.Errorf("publish %s: %w", m.Subject, err)
	}
	return nil
}

// EncodeCancel returns the cancel broadcast of a run: the subject says it
// all, the body is empty.
func EncodeCancel(run uuid.UUID) *nats.Msg { return &nats.Msg{Subject: CancelSubject(run)} }

// DecodeCancel returns the run a cancel broadcast is about.
func DecodeCancel(m *nats.Msg) (uuid.UUID, error) { return ParseCancelSubject(m.Subject) }

// PublishCancel broadcasts a run's cancel on core NATS.
func PublishCancel(nc CorePublisher, run uuid.UUID) error {
	m := EncodeCancel(run)
	if err := nc.PublishMsg(m); err != nil {
		return fmt.Errorf("publish %s: %w", m.Subject, err)
	}
	return nil
}

// MaxDeliveriesAdvisory is the subject on which JetStream announces that a
// message of the given stream and consumer reached MaxDeliver.
func MaxDeliveriesAdvisory(stream, consumer string) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + stream + "." + consumer
}

// MaxDeliveries is the body of that advisory (the fields we read).
type MaxDeliveries struct {
	Stream    string `json:"stream"`
	Consumer  string `json:"consumer"`
	StreamSeq uint64 `json:"stream_seq"`
}

// DecodeMaxDeliveries reads a max-deliveries advisory.
func DecodeMaxDeliveries(data []byte) (MaxDeliveries, error) {
	var a MaxDeliveries
	if err := json.Unmarshal(data, &a); err != nil {
		return a, fmt.Errorf("max deliveries advisory: %w", err)
	}
	return a, nil
}

// Publishing across a stream leader election.
const (
	electionRetryWait = 100 * time.Millisecond // between tries while the stream has no leader
	publishTry        = 3 * time.Second        // one try of a message with an id
	publishTimeout    = 5 * time.Second        // a publish whose ctx has no deadline (the client's default)
)

// publish publishes m to JetStream, with a message id when id is not empty.
//
// While a stream elects a new leader (its old one died) the publish meets
// one of two things for seconds: "no responders" at once, or no answer at
// all (a try sent as the leadership moves can go unanswered, and would wait
// for as long as ctx lets it). The client's default gives up after two
// "no responders" a quarter second apart. So publish retries "no responders"
// until ctx ends (a message nobody received), and a message with an id is
// also tried again after publishTry without an answer: the id makes a try
// that did reach the stream a duplicate, not a second copy. A message
// without one is not, as it might then be stored twice. Without a deadline
// in ctx the whole publish is bounded by publishTimeout.
func publish(ctx context.Context, js Publisher, m *nats.Msg, id string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, publishTimeout)
		defer cancel()
	}
	opts := []jetstream.PublishOpt{jetstream.WithRetryAttempts(math.MaxInt), jetstream.WithRetryWait(electionRetryWait)}
	if id == "" {
		if _, err := js.PublishMsg(ctx, m, opts...); err != nil {
			return fmt.Errorf("publish %s: %w", m.Subject, err)
		}
		return nil
	}
	opts = append(opts, jetstream.WithMsgID(id))
	for {
		tctx, cancel := context.WithTimeout(ctx, publishTry)
		_, err := js.PublishMsg(tctx, m, opts...)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("publish %s: %w", m.Subject, err)
		}
	}
}

// mustJSON encodes the message types of this package, which cannot fail.
func mustJSON(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("bus: encoding %T: %v", v, err))
	}
	return data
}

// SessionsEnded is the body of a SessionsEndedSubject broadcast: the ended
// sessions' ids (never a token).
type SessionsEnded struct {
	Sessions []uuid.UUID `json:"sessions"`
}

// PublishSessionsEnded broadcasts that sessions ended. It is at most once:
// a listener that was disconnected misses it, so listeners also re-check.
func PublishSessionsEnded(nc CorePublisher, ids []uuid.UUID) error {
	if len(ids) == 0 {
		return nil
	}
	m := &nats.Msg{Subject: SessionsEndedSubject, Data: mustJSON(SessionsEnded{Sessions: ids})}
	if err := nc.PublishMsg(m); err != nil {
		return fmt.Errorf("publish %s: %w", m.Subject, err)
	}
	return nil
}

// DecodeSessionsEnded reads a SessionsEndedSubject broadcast.
func DecodeSessionsEnded(data []byte) (SessionsEnded, error) {
	var s SessionsEnded
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("sessions ended: %w", err)
	}
	return s, nil
}

// PublishRunFinal broadcasts that a run is final; the subject says it all.
// Publish it after the run's done is in the transcript stream, so that a
// listener that then finds nothing more to send may end.
func PublishRunFinal(nc CorePublisher, run uuid.UUID) error {
	m := &nats.Msg{Subject: RunFinalSubject(run)}
	if err := nc.PublishMsg(m); err != nil {
		return fmt.Errorf("publish %s: %w", m.Subject, err)
	}
	return nil
}
