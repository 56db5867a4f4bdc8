package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
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
	wsRunKey      = "testum.ws.run"
	wsSinceKey    = "testum.ws.since"
	wsBinaryKey   = "testum.ws.binary"
	wsFinishedKey = "testum.ws.finished"
	// wsDoneGrace is how long after a run's final state was committed its
	// done may still be on its way to the transcript stream (the executor
	// publishes it next, within a 10 s deadline). A re-check that finds the
	// run final and nothing more to send ends the socket only past it; a
	// run-final broadcast comes after done, so it needs none.
	wsDoneGrace = 10 * time.Second
	wsWriteWait = 10 * time.Second
	// wsBatchMsgs and wsBatchBytes bound how many pending messages one
	// write takes: each is its own frame, and they reach the socket in one
	// system call.
	wsBatchMsgs  = 64
	wsBatchBytes = 256 << 10
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
	r, err := g.st.Run(c.UserContext(), id)
	if err != nil {
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
	var binaryMode bool
	switch enc := c.Query("encoding"); enc {
	case "", "json":
	case "binary":
		binaryMode = true
	default:
		return testum.Invalid("encoding %q: want json or binary", enc)
	}
	c.Locals(wsRunKey, id)
	c.Locals(wsSinceKey, since)
	c.Locals(wsBinaryKey, binaryMode)
	c.Locals(wsFinishedKey, r.State.Final() && r.FinishedAt != nil)
	return c.Next()
}

// wsTask relays a run's transcript: everything from the start, or after
// the given cursor, then live messages until the run is done. seq is the
// transcript stream's sequence: unique and increasing within a run.
func (g *Gateway) wsTask(conn *websocket.Conn) {
	run := conn.Locals(wsRunKey).(uuid.UUID)
	since := conn.Locals(wsSinceKey).(uint64)
	p, _ := conn.Locals(principalKey).(*Principal)
	binaryMode, _ := conn.Locals(wsBinaryKey).(bool)
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
	// Registered for the broadcasts first, then the session checked once
	// more: a session that ended after the request's own check and before
	// the registration was announced to nobody.
	var session uuid.UUID
	if p != nil {
		session = p.SessionID
	}
	w := g.wsHub.add(session, run)
	defer g.wsHub.remove(w)
	if !g.wsStillAllowed(ctx, p) {
		g.wsClose(conn, websocket.ClosePolicyViolation, "session ended")
		return
	}
	// Pings are answered by the sender, the socket's only writer of frames
	// other than close; one pending is enough.
	pings := make(chan string, 1)
	conn.SetPingHandler(func(data string) error {
		select {
		case pings <- data:
		default:
		}
		return nil
	})
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

	// Sessions and runs end by broadcast (wshub.go). The broadcasts are core
	// NATS, at most once: a gateway reconnecting to NATS misses what was
	// published meanwhile, a process that dies between its commit and its
	// publish sends nothing, and a socket registers after its run's
	// broadcast went out. The slow re-check from PostgreSQL bounds all that.
	recheck := time.NewTicker(g.cfg.WSRecheck)
	defer recheck.Stop()
	s := wsSender{g: g, conn: conn, binary: binaryMode}
	last := since
	// A run finished long ago may have nothing left in the stream, done
	// included: end at once rather than at the first re-check.
	if finished, _ := conn.Locals(wsFinishedKey).(bool); finished && s.runEnded(ctx, run, last, wsDoneGrace) {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case data := <-pings:
			if err := s.flush(appendFrame(nil, wsOpPong, []byte(data))); err != nil {
				return
			}
		case m, ok := <-msgs:
			if !ok {
				return
			}
			done, err := s.batch(m, msgs, &last, log)
			if err != nil {
				return
			}
			if done {
				g.wsClose(conn, websocket.CloseNormalClosure, "run finished")
				return
			}
		case <-w.ended:
			g.wsClose(conn, websocket.ClosePolicyViolation, "session ended")
			return
		case <-w.final:
			if s.runEnded(ctx, run, last, 0) {
				return
			}
		case <-recheck.C:
			if !g.wsStillAllowed(ctx, p) {
				g.wsClose(conn, websocket.ClosePolicyViolation, "session ended")
				return
			}
			if s.runEnded(ctx, run, last, wsDoneGrace) {
				return
			}
		}
	}
}

// wsSender writes one socket's frames. It is the only writer of data
// frames, and answers pings itself, so that its writes of several frames
// at once need no lock shared with the websocket library.
type wsSender struct {
	g       *Gateway
	conn    *websocket.Conn
	binary  bool
	buf     []byte
	scratch bytes.Buffer
}

// batch writes m and whatever else is already pending in msgs, up to
// wsBatchMsgs and wsBatchBytes, as one frame each in one write; last is
// advanced past what was sent. It reports whether the run's done was among
// them (nothing after it is sent).
func (s *wsSender) batch(m jetstream.Msg, msgs <-chan jetstream.Msg, last *uint64, log *slog.Logger) (bool, error) {
	b := s.buf[:0]
	done := false
	for n := 0; ; n++ {
		o, seq, err := wsDecode(m)
		*last = seq
		if err != nil {
			log.Warn("websocket: malformed transcript message skipped", "err", err)
		} else if s.binary && wsBinType(o.Type) != 0 {
			b = appendBinaryFrame(b, o, seq)
		} else if b, err = appendTranscriptFrame(b, &s.scratch, o, seq); err != nil {
			return false, err
		}
		if err == nil && o.Type == bus.TypeDone {
			done = true
			break
		}
		if n+1 >= wsBatchMsgs || len(b) >= wsBatchBytes {
			break
		}
		var ok bool
		select {
		case m, ok = <-msgs:
		default:
		}
		if !ok {
			break // nothing more pending (or the fetcher ended: the next receive says so)
		}
	}
	s.buf = b
	if len(b) == 0 {
		return done, nil
	}
	return done, s.flush(b)
}

// flush writes frames already encoded. Concurrent writes of a net.Conn do
// not interleave, so a close frame the library writes meanwhile lands
// between two of these writes.
func (s *wsSender) flush(frames []byte) error {
	nc := s.conn.NetConn()
	_ = nc.SetWriteDeadline(time.Now().Add(wsWriteWait))
	_, err := nc.Write(frames)
	return err
}

// runEnded ends the socket if its run is final past grace and nothing of
// its transcript is left to send, with a done of its own (the stream's is
// gone), and reports whether it did.
func (s *wsSender) runEnded(ctx context.Context, run uuid.UUID, last uint64, grace time.Duration) bool {
	done, state := s.g.wsRunEnded(ctx, run, last, grace)
	if !done {
		return false
	}
	if b, err := appendJSONFrame(s.buf[:0], &s.scratch, wsDone(last, state)); err == nil {
		_ = s.flush(b)
	}
	s.g.wsClose(s.conn, websocket.CloseNormalClosure, "run finished")
	return true
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
func (g *Gateway) wsRunEnded(ctx context.Context, run uuid.UUID, last uint64, grace time.Duration) (bool, string) {
	r, err := g.st.Run(ctx, run)
	if err != nil || !r.State.Final() || r.FinishedAt == nil || time.Since(*r.FinishedAt) < grace {
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
// logout, expiry, a rotated key, a deleted or demoted user close it at the
// latest at its next re-check. Watching does not count as activity.
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

// wsDecode reads a transcript message, with its stream sequence.
func wsDecode(m jetstream.Msg) (bus.OutputMsg, uint64, error) {
	var seq uint64
	if md, err := m.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	o, err := bus.DecodeOutput(m.Subject(), m.Headers(), m.Data())
	return o, seq, err
}

// wsRender is the WebSocket message of a transcript message.
func wsRender(o bus.OutputMsg, seq uint64) apiclient.WSMessage {
	m := wsRenderHead(o, seq)
	if m.Encoding != nil {
		m.Payload = base64.StdEncoding.EncodeToString(o.Data)
	} else {
		m.Payload = string(o.Data)
	}
	return m
}

// wsRenderHead is wsRender's message with its payload left empty; its
// encoding says how the payload is to be written: as text when the bytes
// are UTF-8 and JSON would not grow them more than base64 does.
func wsRenderHead(o bus.OutputMsg, seq uint64) apiclient.WSMessage {
	out := apiclient.WSMessage{
		Type: apiclient.WSMessageType(o.Type), Host: opt(o.Host), Seq: seq, HostSeq: opt(o.Seq), Attempt: opt(o.Attempt),
		State: opt(o.State), ExitCode: o.ExitCode, Signal: opt(o.Signal), At: opt(o.AtText()),
	}
	if o.Idx != bus.RunLevel {
		idx := o.Idx
		out.Idx = &idx
	}
	if mostlyEscaped(o.Data) || !utf8.Valid(o.Data) {
		enc := apiclient.Base64
		out.Encoding = &enc
	}
	return out
}

// mostlyEscaped reports whether JSON would grow data by more than base64
// does (a third): JSON writes each control byte but \t \n \r as six
// (\u0000). Binary-ish output such as /dev/zero would otherwise cross the
// socket six times over. ESC is left out of the count: coloured output
// stays readable text, at a few bytes more.
func mostlyEscaped(data []byte) bool {
	escaped, limit := 0, len(data)/3
	for _, c := range data {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != 0x1b {
			if escaped++; escaped*5 > limit {
				return true // the rest cannot change it: binary output is told after a few bytes
			}
		}
	}
	return false
}

func (g *Gateway) wsClose(conn *websocket.Conn, code int, text string) {
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
}
