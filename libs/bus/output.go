package bus

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of transcript messages. The payload is the raw bytes of the chunk
// (no JSON, no base64) or, for the other types, a short text.
const (
	hdrType    = "Testum-Type"    // one of the Type values
	hdrHost    = "Testum-Host"    // the host's name
	hdrSeq     = "Testum-Seq"     // per-host sequence, from 1, over the host's whole transcript
	hdrAttempt = "Testum-Attempt" // which start of the host produced it
	hdrState   = "Testum-State"   // status, exit and done: the state reached
	hdrExit    = "Testum-Exit"    // exit: the exit code
	hdrSignal  = "Testum-Signal"  // exit: the signal that ended the command, if any
	hdrAt      = "Testum-At"      // RFC 3339 (nanoseconds) time the executor saw it
)

// MaxChunk is the largest output payload, well under NATS's 1 MiB default.
// A chunk reaches it only under load: output that arrives while earlier
// chunks wait for their acks joins the next chunk, and output arriving with
// nothing in flight goes at once, however small. Larger chunks mean fewer
// messages, acks and WebSocket frames per byte when a host floods.
const MaxChunk = 256 << 10

// LegacyChunk was MaxChunk up to the version that raised it; an output
// stream created then allows messages of LegacyChunk + chunkHeadroom.
const LegacyChunk = 32 << 10

// chunkHeadroom is the room a transcript message needs on top of its
// payload (subject and headers) within the stream's maximum message size.
const chunkHeadroom = 4096

// ChunkLimit is the largest output payload the output stream takes: MaxChunk,
// or less when the stream's maximum message size is smaller (a stream an
// earlier testum created and nothing has raised yet) or the server's maximum
// payload is. Executors size their chunks by it.
func ChunkLimit(ctx context.Context, js jetstream.JetStream) (int, error) {
	s, err := js.Stream(ctx, StreamOutput)
	if err != nil {
		return 0, fmt.Errorf("bus: output stream: %w", err)
	}
	limit := MaxChunk
	if m := int(s.CachedInfo().Config.MaxMsgSize); m > 0 {
		limit = min(limit, m-chunkHeadroom)
	}
	if nc := js.Conn(); nc != nil && nc.MaxPayload() > 0 {
		limit = min(limit, int(nc.MaxPayload())-chunkHeadroom)
	}
	if limit < 1024 {
		return 0, fmt.Errorf("bus: output stream %s takes messages of at most %d bytes: too small for transcripts", StreamOutput, limit+chunkHeadroom)
	}
	return limit, nil
}

// Type is the kind of a transcript message; the WebSocket messages use the
// same names.
type Type string

// The transcript message types.
const (
	TypeStdout Type = "stdout"
	TypeStderr Type = "stderr"
	TypeStatus Type = "status" // a host state transition; payload is the state
	TypeExit   Type = "exit"   // a host finished; payload is the exit code (or the state when none)
	TypeError  Type = "error"  // why a host failed to run, or a truncation/gap notice
	TypeDone   Type = "done"   // the run finished; payload is the run state
)

// Valid reports whether t is one of the transcript message types.
func (t Type) Valid() bool {
	switch t {
	case TypeStdout, TypeStderr, TypeStatus, TypeExit, TypeError, TypeDone:
		return true
	}
	return false
}

// IsOutput reports whether t carries the command's own output.
func (t Type) IsOutput() bool { return t == TypeStdout || t == TypeStderr }

// OutputMsg is one message of a run's transcript on the output stream. A
// field at its zero value is left out of the headers, so the messages of a
// host's run (every header), of a host nobody runs (no attempt) and the
// run's done (no host, no sequence) each carry what they always have.
type OutputMsg struct {
	Run      uuid.UUID
	Idx      int    // the host's index in the run, or RunLevel
	Type     Type   // never empty
	Host     string // the host's name
	Seq      int    // per-host sequence from 1, over the host's whole transcript
	Attempt  int    // which start of the host produced it; 0 when no start did (reaper, coordinator)
	State    string // status, exit, done: the state reached
	ExitCode *int   // exit: the command's exit code, when it has one
	Signal   string // exit: the signal that ended the command, if any
	At       time.Time
	Data     []byte // the raw output, or the short text of the other types
}

// Subject is the subject the message travels on.
func (o OutputMsg) Subject() string { return OutputSubject(o.Run, o.Idx) }

// MsgID is the message's Nats-Msg-Id, which makes a republished message of
// the same place in the transcript a duplicate: a host attempt's messages by
// their sequence, a run's done once. Messages about a host that no attempt
// runs have none.
func (o OutputMsg) MsgID() string {
	switch {
	case o.Type == TypeDone && o.Idx == RunLevel:
		return "done/" + o.Run.String()
	case o.Attempt > 0:
		return fmt.Sprintf("%s/%d/%d/%d", o.Run, o.Idx, o.Attempt, o.Seq)
	}
	return ""
}

// Encode returns the message ready to publish: subject, headers and payload.
func (o OutputMsg) Encode() *nats.Msg {
	m := &nats.Msg{Subject: o.Subject(), Data: o.Data, Header: nats.Header{}}
	h := m.Header
	h.Set(hdrType, string(o.Type))
	if o.Host != "" {
		h.Set(hdrHost, o.Host)
	}
	if o.Seq > 0 {
		h.Set(hdrSeq, strconv.Itoa(o.Seq))
	}
	if o.Attempt > 0 {
		h.Set(hdrAttempt, strconv.Itoa(o.Attempt))
	}
	if !o.At.IsZero() {
		h.Set(hdrAt, o.At.UTC().Format(time.RFC3339Nano))
	}
	if o.State != "" {
		h.Set(hdrState, o.State)
	}
	if o.ExitCode != nil {
		h.Set(hdrExit, strconv.Itoa(*o.ExitCode))
	}
	if o.Signal != "" {
		h.Set(hdrSignal, o.Signal)
	}
	return m
}

// DecodeOutput reads a transcript message from its subject, headers and
// payload (a jetstream.Msg's Subject, Headers and Data, or a stored
// message's). The payload is not copied.
func DecodeOutput(subject string, h nats.Header, data []byte) (OutputMsg, error) {
	run, idx, err := ParseOutputSubject(subject)
	if err != nil {
		return OutputMsg{}, err
	}
	o := OutputMsg{Run: run, Idx: idx, Data: data}
	fail := func(format string, args ...any) (OutputMsg, error) {
		return OutputMsg{}, fmt.Errorf("output message on %s: %s", subject, fmt.Sprintf(format, args...))
	}
	o.Type = Type(h.Get(hdrType))
	if !o.Type.Valid() {
		return fail("type %q", o.Type)
	}
	o.Host = h.Get(hdrHost)
	o.State = h.Get(hdrState)
	o.Signal = h.Get(hdrSignal)
	if o.Seq, err = positive(h, hdrSeq); err != nil {
		return fail("%v", err)
	}
	if o.Attempt, err = positive(h, hdrAttempt); err != nil {
		return fail("%v", err)
	}
	if s := h.Get(hdrExit); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || strconv.Itoa(v) != s {
			return fail("exit code %q", s)
		}
		o.ExitCode = &v
	}
	if s := h.Get(hdrAt); s != "" {
		if o.At, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return fail("time %q", s)
		}
		o.At = o.At.UTC()
	}
	return o, nil
}

// AtText is the message's time as its header carries it, or "" when it has
// none.
func (o OutputMsg) AtText() string {
	if o.At.IsZero() {
		return ""
	}
	return o.At.UTC().Format(time.RFC3339Nano)
}

// positive reads an optional header written by strconv.Itoa from a value of
// at least 1; absent is 0.
func positive(h nats.Header, name string) (int, error) {
	s := h.Get(name)
	if s == "" {
		return 0, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 || strconv.Itoa(v) != s {
		return 0, fmt.Errorf("%s %q: want a positive integer", name, s)
	}
	return v, nil
}

// PublishOutput publishes a transcript message, with its message id.
func PublishOutput(ctx context.Context, js Publisher, o OutputMsg) error {
	return publish(ctx, js, o.Encode(), o.MsgID())
}
