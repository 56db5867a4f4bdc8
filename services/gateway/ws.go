package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

const (
	wsRunKey   = "testum.ws.run"
	wsSinceKey = "testum.ws.since"
	// wsCheckEvery is how often an open WebSocket re-checks that its run is
	// still going (and, with sessions, that the session is still valid).
	wsCheckEvery = 2 * time.Second
	wsWriteWait  = 10 * time.Second
	wsReadLimit  = 4 << 10 // bytes of one client message
	wsPerSession = 32      // WebSockets one session may hold open on one gateway
	// wsConsumerIdle is how long the server keeps a socket's transcript
	// consumer once nobody pulls from it. A socket that ends deletes its
	// consumer; this covers a gateway that cannot (killed, or cut off from
	// NATS), whose consumers would otherwise stay for the client library's
	// five minutes. A live socket always has a pull request waiting, so it
	// is never idle; a consumer removed under a socket whose connection
	// moved is made anew from where it was.
	wsConsumerIdle = 15 * time.Second
	// wsHeartbeat is how often the server tells an idle socket's consumer
	// that it is still there. A consumer whose NATS node went away (a
	// restart, a crash) says nothing: two missed heartbeats are how the
	// client library notices and makes it anew where it was, so they bound
	// how long the socket stalls (the library's default for an ordered
	// consumer, 5 s, stalls it for 10 s and more).
	wsHeartbeat = 2 * time.Second
)

// wsSessions counts the WebSockets each session holds open on this
// gateway, so that one session cannot hold thousands of transcript
// consumers. The zero value is ready to use.
type wsSessions struct {
	mu   sync.Mutex
	open map[uuid.UUID]int
}

// acquire takes a slot for session, or reports that it holds them all.
func (w *wsSessions) acquire(session uuid.UUID) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.open == nil {
		w.open = map[uuid.UUID]int{}
	}
	if w.open[session] >= wsPerSession {
		return false
	}
	w.open[session]++
	return true
}

func (w *wsSessions) release(session uuid.UUID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.open[session]--; w.open[session] <= 0 {
		delete(w.open, session)
	}
}

// wsUpgrade validates a WebSocket request before the upgrade, so that a bad
// run id or cursor gets a JSON error with the right status.
func (g *Gateway) wsUpgrade(c *fiber.Ctx) error {
	if !websocket.IsWebSocketUpgrade(c) {
		return fiber.NewError(fiber.StatusUpgradeRequired, "this endpoint speaks WebSocket only")
	}
	id, err := uuid.Parse(c.Params("id"))
	if err != nil {
		return testum.NotFound("task %q not found", c.Params("id"))
	}
	if _, err := g.st.Run(c.UserContext(), id); err != nil {
		if testum.CodeOf(err) == testum.CodeNotFound {
			return testum.NotFound("task %s not found", id)
		}
		return err
	}
	var since uint64
	for _, name := range []string{"since", "after", "seq", "last_seq"} {
		if s := c.Query(name); s != "" {
			if since, err = strconv.ParseUint(s, 10, 64); err != nil {
				return testum.Invalid("%s %q: want the last seq received (a non-negative integer)", name, s)
			}
			break
		}
	}
	c.Locals(wsRunKey, id)
	c.Locals(wsSinceKey, since)
	return c.Next()
}

// wsTask relays a run's transcript: everything from the start, or after
// the given cursor, then live messages until the run is done. seq is the
// transcript stream's sequence: unique and increasing within a run.
func (g *Gateway) wsTask(conn *websocket.Conn) {
	run := conn.Locals(wsRunKey).(uuid.UUID)
	since := conn.Locals(wsSinceKey).(uint64)
	p, _ := conn.Locals(principalKey).(*Principal)
	log := g.log.With("run", run)
	defer g.wsCounted()()

	// Clients send nothing but control frames (close, ping, pong): a frame
	// announcing more than wsReadLimit ends the socket (close 1009) before
	// any of it is buffered.
	conn.SetReadLimit(wsReadLimit)
	if p != nil {
		if !g.wsOpen.acquire(p.SessionID) {
			g.wsClose(conn, websocket.ClosePolicyViolation,
				fmt.Sprintf("too many WebSockets open for this session (at most %d)", wsPerSession))
			return
		}
		defer g.wsOpen.release(p.SessionID)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The client may only close or ping; reading also notices a vanished peer.
	// The reader must be gone before wsTask returns: fasthttp reuses the
	// connection's buffers once the handler is done.
	readerDone := make(chan struct{})
	defer func() {
		_ = conn.SetReadDeadline(time.Now())
		<-readerDone
	}()
	go func() {
		defer close(readerDone)
		defer cancel()
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}()

	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{bus.OutputFilter(run)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		// The ordered consumer's own default is five minutes.
		InactiveThreshold: wsConsumerIdle,
	}
	if since > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, since+1
	}
	cons, err := g.js.OrderedConsumer(ctx, bus.StreamOutput, cfg)
	if err != nil {
		log.Warn("websocket: cannot read the transcript", "err", err)
		g.wsClose(conn, websocket.CloseInternalServerErr, "transcript unavailable")
		return
	}
	defer g.wsDropConsumer(cons) // after the iterator has stopped (deferred below)
	iter, err := cons.Messages(jetstream.PullHeartbeat(wsHeartbeat))
	if err != nil {
		g.wsClose(conn, websocket.CloseInternalServerErr, "transcript unavailable")
		return
	}
	defer iter.Stop()
	go func() { <-ctx.Done(); iter.Stop() }()

	msgs := make(chan jetstream.Msg, 256)
	fetched := make(chan struct{})
	// The fetching goroutine may be making the consumer anew (the ordered
	// consumer's reset): wait for it, so that wsDropConsumer deletes the
	// consumer that is current.
	defer func() { cancel(); iter.Stop(); <-fetched }()
	go func() {
		defer close(fetched)
		defer close(msgs)
		for {
			m, err := iter.Next()
			if err != nil {
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()

	check := time.NewTicker(wsCheckEvery)
	defer check.Stop()
	last := since
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			out, seq, err := wsMessage(m)
			last = seq
			if err != nil {
				log.Warn("websocket: malformed transcript message skipped", "err", err)
				continue
			}
			if err := g.wsWrite(conn, out); err != nil {
				return
			}
			if out.Type == apiclient.WSMessageType(bus.TypeDone) {
				g.wsClose(conn, websocket.CloseNormalClosure, "run finished")
				return
			}
		case <-check.C:
			if !g.wsStillAllowed(ctx, p) {
				g.wsClose(conn, websocket.ClosePolicyViolation, "session ended")
				return
			}
			// A finished run whose "done" is gone from the stream (expired):
			// end once everything that remains was sent.
			if done, state := g.wsRunEnded(ctx, run, last); done {
				_ = g.wsWrite(conn, wsDone(last, state))
				g.wsClose(conn, websocket.CloseNormalClosure, "run finished")
				return
			}
		}
	}
}

// wsDropConsumer deletes a socket's transcript consumer once the socket is
// done with it. The server would otherwise keep it for wsConsumerIdle,
// with its goroutines and buffers: with clients coming and going, many of
// them.
func (g *Gateway) wsDropConsumer(cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.js.DeleteConsumer(ctx, bus.StreamOutput, info.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		g.log.Debug("websocket: deleting the transcript consumer; the server drops it when inactive", "consumer", info.Name, "err", err)
	}
}

// wsRunEnded reports whether the run is final and everything of its
// transcript has been sent: the last message on its subjects is at or
// before last, the stream sequence sent most recently. (The consumer's
// pending count cannot tell: it leaves out what the client library has
// fetched but this socket has not sent yet, and its cached copy is the one
// from when the consumer was made.)
func (g *Gateway) wsRunEnded(ctx context.Context, run uuid.UUID, last uint64) (bool, string) {
	r, err := g.st.Run(ctx, run)
	if err != nil || !r.State.Final() || r.FinishedAt == nil || time.Since(*r.FinishedAt) < 2*wsCheckEvery {
		return false, ""
	}
	stream, err := g.js.Stream(ctx, bus.StreamOutput)
	if err != nil {
		return false, ""
	}
	m, err := stream.GetLastMsgForSubject(ctx, bus.OutputFilter(run))
	switch {
	case err == nil && m.Sequence > last:
		return false, "" // more to send
	case err != nil && !bus.IsNotFound(err):
		return false, ""
	}
	return true, string(r.State)
}

// wsStillAllowed re-checks the caller's session on an open WebSocket:
// logout, expiry, a rotated key, a deleted or demoted user close it within
// wsCheckEvery. Watching does not count as activity.
func (g *Gateway) wsStillAllowed(ctx context.Context, p *Principal) bool {
	if p == nil {
		return false
	}
	s, err := g.st.SessionCheck(ctx, p.SessionID, g.cfg.SessionIdle)
	if err != nil {
		return !store.IsNotFound(err) && ctx.Err() == nil // a database hiccup does not log anyone out
	}
	return auth.Allowed(auth.Role(s.Role), auth.ActionRunWatch)
}

// wsMessage renders a transcript message for the WebSocket, with its
// stream sequence.
func wsMessage(m jetstream.Msg) (apiclient.WSMessage, uint64, error) {
	var seq uint64
	if md, err := m.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	o, err := bus.DecodeOutput(m.Subject(), m.Headers(), m.Data())
	if err != nil {
		return apiclient.WSMessage{}, seq, err
	}
	return wsRender(o, seq), seq, nil
}

// wsRender is the WebSocket message of a transcript message.
func wsRender(o bus.OutputMsg, seq uint64) apiclient.WSMessage {
	out := apiclient.WSMessage{
		Type: apiclient.WSMessageType(o.Type), Host: opt(o.Host), Seq: seq, HostSeq: opt(o.Seq), Attempt: opt(o.Attempt),
		State: opt(o.State), ExitCode: o.ExitCode, Signal: opt(o.Signal), At: opt(o.AtText()),
	}
	if o.Idx != bus.RunLevel {
		idx := o.Idx
		out.Idx = &idx
	}
	if utf8.Valid(o.Data) && !mostlyEscaped(o.Data) {
		out.Payload = string(o.Data)
	} else {
		enc := apiclient.Base64
		out.Payload, out.Encoding = base64.StdEncoding.EncodeToString(o.Data), &enc
	}
	return out
}

// mostlyEscaped reports whether JSON would grow data by more than base64
// does (a third): JSON writes each control byte but \t \n \r as six
// (\u0000). Binary-ish output such as /dev/zero would otherwise cross the
// socket six times over. ESC is left out of the count: coloured output
// stays readable text, at a few bytes more.
func mostlyEscaped(data []byte) bool {
	escaped := 0
	for _, c := range data {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != 0x1b {
			escaped++
		}
	}
	return escaped*5 > len(data)/3
}

// wsWrite sends one message as JSON text. HTML escaping is off: it would
// write every <, > and & of the output as six bytes, for no reader that
// needs it.
func (g *Gateway) wsWrite(conn *websocket.Conn, m apiclient.WSMessage) error {
	buf := wsBufs.Get().(*bytes.Buffer)
	defer wsBufs.Put(buf)
	buf.Reset()
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(wsWriteWait))
	return conn.WriteMessage(websocket.TextMessage, bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

var wsBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (g *Gateway) wsClose(conn *websocket.Conn, code int, text string) {
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
}
