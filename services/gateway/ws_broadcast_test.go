package gateway_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/services/gateway"
)

// noRecheck leaves only the broadcasts to close a socket: its re-check
// from PostgreSQL comes long after any test's hang guard.
func noRecheck(c *gateway.Config) { c.WSRecheck = time.Hour }

// wsFrame is one frame a test client read.
type wsFrame struct {
	kind int // websocket.TextMessage or websocket.BinaryMessage
	data []byte
}

// wsClient is a WebSocket whose frames a test reads one by one.
type wsClient struct {
	t      *testing.T
	conn   *websocket.Conn
	frames chan wsFrame
	closed chan error
}

func wsDial(t *testing.T, g *gw, token, run, query string) *wsClient {
	t.Helper()
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	u := strings.Replace(g.URL, "http", "ws", 1) + "/ws/tasks/" + run
	if query != "" {
		u += "?" + query
	}
	conn, _, err := websocket.DefaultDialer.Dial(u, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &wsClient{t: t, conn: conn, frames: make(chan wsFrame, 4096), closed: make(chan error, 1)}
	go func() {
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Minute)) // a hang guard only
		for {
			kind, data, err := conn.ReadMessage()
			if err != nil {
				c.closed <- err
				return
			}
			c.frames <- wsFrame{kind, data}
		}
	}()
	return c
}

// next returns the next frame, failing if the socket ends first.
func (c *wsClient) next() wsFrame {
	c.t.Helper()
	select {
	case f := <-c.frames: // frames read before the close come first
		return f
	default:
	}
	select {
	case f := <-c.frames:
		return f
	case err := <-c.closed:
		c.t.Fatalf("socket ended: %v", err)
	case <-time.After(time.Minute): // a hang guard
		c.t.Fatal("no frame within a minute")
	}
	return wsFrame{}
}

// closeCode waits for the socket's close and returns its code.
func (c *wsClient) closeCode(what string) int {
	c.t.Helper()
	for {
		select {
		case <-c.frames:
		case err := <-c.closed:
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				c.t.Fatalf("%s: socket ended with %v, want a close frame", what, err)
			}
			return ce.Code
		case <-time.After(time.Minute): // a hang guard
			c.t.Fatalf("%s: the socket stayed open", what)
		}
	}
}

// publisher publishes transcript messages of run into the output stream.
type publisher struct {
	t   *testing.T
	js  jetstream.JetStream
	run uuid.UUID
}

func newPublisher(t *testing.T, e *env, run string) *publisher {
	t.Helper()
	js := e.jetStream(t)
	return &publisher{t: t, js: js, run: uuid.MustParse(run)}
}

func (p *publisher) publish(o bus.OutputMsg) {
	p.t.Helper()
	o.Run = p.run
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bus.PublishOutput(ctx, p.js, o); err != nil {
		p.t.Fatal(err)
	}
}

// live waits until c relays: a message published now reaches it, so its
// socket is past registering for broadcasts.
func live(t *testing.T, p *publisher, c *wsClient, hostSeq int) {
	t.Helper()
	p.publish(bus.OutputMsg{Idx: 0, Type: bus.TypeStdout, Host: "h0", Seq: hostSeq, Attempt: 1, At: time.Now(), Data: []byte("hello\n")})
	if f := c.next(); f.kind != websocket.TextMessage || !bytes.Contains(f.data, []byte(`"hello\n"`)) {
		t.Fatalf("first frame %d %q", f.kind, f.data)
	}
}

// A session ended through one gateway closes its WebSockets on another,
// by broadcast (neither gateway re-checks from PostgreSQL within the
// test): logout, an admin ending it, and expiry found by the sweep.
func TestWebSocketSessionEndBroadcastAcrossGateways(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.start(noRecheck), e.start(noRecheck)
	ctx := t.Context()
	root := a.as(t, apiclient.SuperAdmin)
	for _, how := range []string{"logout", "admin", "expiry"} {
		u := root.createUser("wsb-"+how, apiclient.Admin)
		c := a.anon(t)
		c.login(u.User.Username, u.MasterKey)
		run := queuedRun(t, root)
		ws := wsDial(t, b, c.token, run, "")
		live(t, newPublisher(t, e, run), ws, 1)
		switch how {
		case "logout":
			got(c.LogoutWithResponse(ctx)).want(t, http.StatusNoContent)
		case "admin":
			list := got(root.SessionListWithResponse(ctx, &apiclient.SessionListParams{})).want(t, http.StatusOK).JSON200
			var id uuid.UUID
			for _, s := range *list {
				if s.Username == u.User.Username {
					id = s.Id
				}
			}
			if id == uuid.Nil {
				t.Fatalf("no session of %s in %+v", u.User.Username, *list)
			}
			got(root.SessionDeleteWithResponse(ctx, id)).want(t, http.StatusNoContent)
		case "expiry":
			e.clock.Advance(24 * time.Hour)
			if _, err := a.SweepSessions(ctx); err != nil {
				t.Fatal(err)
			}
			root = a.as(t, apiclient.SuperAdmin) // expired with the rest
		}
		if code := ws.closeCode(how); code != websocket.ClosePolicyViolation {
			t.Fatalf("%s: close %d, want %d", how, code, websocket.ClosePolicyViolation)
		}
	}
}

// Without a broadcast (a session ended behind the gateways' back, as when
// the broadcast was missed) the re-check from PostgreSQL closes the socket.
func TestWebSocketRecheckWithoutBroadcast(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(func(c *gateway.Config) { c.WSRecheck = 100 * time.Millisecond })
	root := g.as(t, apiclient.SuperAdmin)
	u := root.createUser("wsr", apiclient.Admin)
	c := g.anon(t)
	c.login(u.User.Username, u.MasterKey)
	run := queuedRun(t, root)
	ws := wsDial(t, g, c.token, run, "")
	live(t, newPublisher(t, e, run), ws, 1)
	if _, err := g.st.SessionsEndForUser(t.Context(), u.User.Id, "ended behind the gateway's back"); err != nil {
		t.Fatal(err)
	}
	if code := ws.closeCode("recheck"); code != websocket.ClosePolicyViolation {
		t.Fatalf("close %d, want %d", code, websocket.ClosePolicyViolation)
	}
}

// A run-final broadcast ends a socket whose run has no done in the stream
// (gone, or never written) once everything there was sent, with a done of
// the gateway's own.
func TestWebSocketRunFinalBroadcast(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.start(noRecheck), e.start(noRecheck)
	root := a.as(t, apiclient.SuperAdmin)
	run := queuedRun(t, root)
	ws := wsDial(t, b, root.token, run, "")
	p := newPublisher(t, e, run)
	live(t, p, ws, 1)
	id := uuid.MustParse(run)
	// The run is finished as its coordinator finishes it.
	if err := a.st.ExecutorRegister(t.Context(), "ex-ws", "host", 1, 1); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := a.st.RunCoordinate(t.Context(), id, "ex-ws", time.Minute); err != nil || !ok {
		t.Fatalf("coordinate the run: %v %v", ok, err)
	}
	if _, ok, err := a.st.RunFinish(t.Context(), id, "ex-ws", "canceled", ""); err != nil || !ok {
		t.Fatalf("finish the run: %v %v", ok, err)
	}
	nc := e.connect(t)
	if err := bus.PublishRunFinal(nc, id); err != nil {
		t.Fatal(err)
	}
	var m apiclient.WSMessage
	if err := json.Unmarshal(ws.next().data, &m); err != nil || m.Type != "done" || m.Payload != "canceled" {
		t.Fatalf("after the broadcast: %+v (%v), want done canceled", m, err)
	}
	if code := ws.closeCode("run final"); code != websocket.CloseNormalClosure {
		t.Fatalf("close %d, want %d", code, websocket.CloseNormalClosure)
	}
}

// ?encoding=binary sends stdout and stderr as binary frames (the header of
// openapi.yaml, then the raw bytes) and everything else as the JSON text
// frames of the default mode; the bytes are the ones published, non-UTF-8
// included, and since resumes after a binary frame's seq. The JSON mode,
// reading the same backlog in batches, still sends one message per frame.
func TestWebSocketBinaryMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(noRecheck)
	root := g.as(t, apiclient.SuperAdmin)
	run := queuedRun(t, root)
	p := newPublisher(t, e, run)
	const chunks = 300
	var want []byte // every stdout byte, in order
	var wantErr []byte
	for i := 1; i <= chunks; i++ {
		data := chunkBytes(i)
		typ := bus.TypeStdout
		if i%5 == 0 {
			typ, wantErr = bus.TypeStderr, append(wantErr, data...)
		} else {
			want = append(want, data...)
		}
		p.publish(bus.OutputMsg{Idx: 3, Type: typ, Host: "h3", Seq: i, Attempt: 2, At: time.Now(), Data: data})
	}
	code := 0
	p.publish(bus.OutputMsg{Idx: 3, Type: bus.TypeExit, Host: "h3", Seq: chunks + 1, Attempt: 2, State: "ok", ExitCode: &code, At: time.Now(), Data: []byte("0")})
	p.publish(bus.OutputMsg{Idx: bus.RunLevel, Type: bus.TypeDone, State: "succeeded", At: time.Now(), Data: []byte("succeeded")})

	type read struct {
		out, errOut []byte
		seqs        []uint64 // of every frame
		binary      int      // frames
		text        []apiclient.WSMessage
	}
	readAll := func(query string) read {
		t.Helper()
		var r read
		ws := wsDial(t, g, root.token, run, query)
		for {
			f := ws.next()
			if f.kind == websocket.BinaryMessage {
				if len(f.data) < 25 {
					t.Fatalf("binary frame of %d bytes", len(f.data))
				}
				typ, idx, attempt := f.data[0], binary.BigEndian.Uint32(f.data[1:]), binary.BigEndian.Uint32(f.data[5:])
				seq, hostSeq := binary.BigEndian.Uint64(f.data[9:]), binary.BigEndian.Uint64(f.data[17:])
				if idx != 3 || attempt != 2 || hostSeq == 0 || hostSeq > chunks {
					t.Fatalf("binary header idx %d attempt %d host_seq %d", idx, attempt, hostSeq)
				}
				switch typ {
				case 1:
					r.out = append(r.out, f.data[25:]...)
				case 2:
					r.errOut = append(r.errOut, f.data[25:]...)
				default:
					t.Fatalf("binary frame of type %d", typ)
				}
				r.seqs = append(r.seqs, seq)
				r.binary++
				continue
			}
			var m apiclient.WSMessage
			dec := json.NewDecoder(bytes.NewReader(f.data))
			if err := dec.Decode(&m); err != nil || dec.More() {
				t.Fatalf("text frame %q: want one JSON message (%v)", f.data, err)
			}
			r.seqs = append(r.seqs, m.Seq)
			if m.Type == "stdout" || m.Type == "stderr" {
				data := []byte(m.Payload)
				if m.Encoding != nil && *m.Encoding == apiclient.Base64 {
					var err error
					if data, err = base64.StdEncoding.DecodeString(m.Payload); err != nil {
						t.Fatal(err)
					}
				}
				if m.Type == "stdout" {
					r.out = append(r.out, data...)
				} else {
					r.errOut = append(r.errOut, data...)
				}
				continue
			}
			r.text = append(r.text, m)
			if m.Type == "done" {
				if c := ws.closeCode(query); c != websocket.CloseNormalClosure {
					t.Fatalf("%s: close %d", query, c)
				}
				break
			}
		}
		for i := 1; i < len(r.seqs); i++ {
			if r.seqs[i] <= r.seqs[i-1] {
				t.Fatalf("%s: seq %d after %d", query, r.seqs[i], r.seqs[i-1])
			}
		}
		return r
	}

	js, bin := readAll(""), readAll("encoding=binary")
	if !bytes.Equal(bin.out, want) || !bytes.Equal(bin.errOut, wantErr) {
		t.Fatalf("binary mode: %d stdout and %d stderr bytes, want %d and %d, identical", len(bin.out), len(bin.errOut), len(want), len(wantErr))
	}
	if !bytes.Equal(js.out, want) || !bytes.Equal(js.errOut, wantErr) {
		t.Fatal("JSON mode: output differs from what was published")
	}
	if len(js.seqs) != chunks+2 || len(bin.seqs) != chunks+2 {
		t.Fatalf("%d JSON and %d binary-mode messages, want %d", len(js.seqs), len(bin.seqs), chunks+2)
	}
	if bin.binary != chunks || js.binary != 0 {
		t.Fatalf("%d binary frames in binary mode, %d in JSON mode: want %d and none", bin.binary, js.binary, chunks)
	}
	if len(bin.text) != 2 || bin.text[0].Type != "exit" || bin.text[1].Type != "done" {
		t.Fatalf("binary mode's text frames: %+v, want exit and done", bin.text)
	}
	// Resume after the 100th message: the rest, byte for byte.
	cut := bin.seqs[99]
	rest := readAll("encoding=binary&since=" + strconv.FormatUint(cut, 10))
	if rest.seqs[0] != bin.seqs[100] || len(rest.seqs) != len(bin.seqs)-100 {
		t.Fatalf("resumed at seq %d with %d messages, want %d and %d", rest.seqs[0], len(rest.seqs), bin.seqs[100], len(bin.seqs)-100)
	}
	var tailOut []byte
	for i := 101; i <= chunks; i++ {
		if i%5 != 0 {
			tailOut = append(tailOut, chunkBytes(i)...)
		}
	}
	if !bytes.Equal(rest.out, tailOut) {
		t.Fatalf("resumed stdout: %d bytes, want %d, identical", len(rest.out), len(tailOut))
	}
}

// chunkBytes is the i-th chunk of TestWebSocketBinaryMode: 100 to 196
// bytes running through every byte value, 0x00 and 0xff among them.
func chunkBytes(i int) []byte {
	data := make([]byte, 0, 200)
	for j := range 100 + i%97 {
		data = append(data, byte(i*31+j*7))
	}
	return data
}

// Binary mode with several hosts writing interleaved, in chunks of
// bus.MaxChunk and small ones, stdout and stderr: each host's streams
// arrive byte for byte, and a resume after a stderr frame of one host
// sends exactly what came after it, every host's.
func TestWebSocketBinaryModeHosts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(noRecheck)
	root := g.as(t, apiclient.SuperAdmin)
	run := queuedRun(t, root)
	p := newPublisher(t, e, run)
	type key struct {
		idx uint32
		typ byte
	}
	const hosts, perHost = 3, 12
	type sent struct {
		k    key
		data []byte
	}
	var all []sent
	seqs := make([]int, hosts)
	for i := range perHost {
		for h := range hosts {
			size := 100 + i*7
			if i%3 == 0 {
				size = bus.MaxChunk
			}
			data := make([]byte, size)
			for j := range data {
				data[j] = byte(i*131 + h*17 + j*7)
			}
			typ, code := bus.TypeStdout, byte(1)
			if (i+h)%4 == 0 {
				typ, code = bus.TypeStderr, 2
			}
			seqs[h]++
			p.publish(bus.OutputMsg{Idx: h, Type: typ, Host: "h" + strconv.Itoa(h), Seq: seqs[h], Attempt: 1, At: time.Now(), Data: data})
			all = append(all, sent{key{uint32(h), code}, data})
		}
	}
	p.publish(bus.OutputMsg{Idx: bus.RunLevel, Type: bus.TypeDone, State: "succeeded", At: time.Now(), Data: []byte("succeeded")})

	type frame struct {
		k    key
		seq  uint64
		data []byte
	}
	read := func(query string) []frame {
		t.Helper()
		ws := wsDial(t, g, root.token, run, query)
		var got []frame
		for range len(all) + 2 { // bounded: every message and done
			f := ws.next()
			if f.kind == websocket.TextMessage {
				var m apiclient.WSMessage
				if err := json.Unmarshal(f.data, &m); err != nil || m.Type != "done" {
					t.Fatalf("%s: text frame %.200q, want done only", query, f.data)
				}
				return got
			}
			if len(f.data) < 25 {
				t.Fatalf("binary frame of %d bytes", len(f.data))
			}
			got = append(got, frame{key{binary.BigEndian.Uint32(f.data[1:]), f.data[0]}, binary.BigEndian.Uint64(f.data[9:]), f.data[25:]})
		}
		t.Fatalf("%s: no done after %d frames", query, len(all)+2)
		return nil
	}
	check := func(what string, got []frame, want []sent) {
		t.Helper()
		streams := func(n int, k func(int) key, d func(int) []byte) map[key][]byte {
			m := map[key][]byte{}
			for i := range n {
				m[k(i)] = append(m[k(i)], d(i)...)
			}
			return m
		}
		g := streams(len(got), func(i int) key { return got[i].k }, func(i int) []byte { return got[i].data })
		w := streams(len(want), func(i int) key { return want[i].k }, func(i int) []byte { return want[i].data })
		if len(got) != len(want) || len(g) != len(w) {
			t.Fatalf("%s: %d frames in %d streams, want %d in %d", what, len(got), len(g), len(want), len(w))
		}
		for k, data := range w {
			if !bytes.Equal(g[k], data) {
				t.Fatalf("%s: host %d type %d: %d bytes, want %d, identical", what, k.idx, k.typ, len(g[k]), len(data))
			}
		}
	}
	first := read("encoding=binary")
	check("whole", first, all)
	cut := -1
	for i := len(first) / 2; i < len(first); i++ {
		if first[i].k.typ == 2 {
			cut = i
			break
		}
	}
	if cut < 0 {
		t.Fatal("no stderr frame in the second half")
	}
	rest := read("encoding=binary&since=" + strconv.FormatUint(first[cut].seq, 10))
	check("resumed", rest, all[cut+1:])
	if rest[0].seq != first[cut+1].seq {
		t.Fatalf("resumed at seq %d, want %d", rest[0].seq, first[cut+1].seq)
	}
}
