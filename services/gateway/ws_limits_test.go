package gateway_test

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	apiclient "github.com/testum/testum/libs/api/client"
)

// serving pings and reports whether the gateway answers (its handler is
// past the per-session check and reading) or closes the socket instead.
func (p *wsPeer) serving(t *testing.T) (bool, *websocket.CloseError) {
	t.Helper()
	if err := p.conn.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.pong:
		return true, nil
	case err := <-p.closed:
		ce, _ := err.(*websocket.CloseError)
		return false, ce
	case <-time.After(30 * time.Second):
		t.Fatal("no pong and no close within 30s")
	}
	return false, nil
}

func TestWebSocketSessionCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	root := g.as(t, apiclient.SuperAdmin)
	run := queuedRun(t, root)
	a := g.as(t, apiclient.SuperAdmin)

	var open []*wsPeer
	for i := range 32 {
		p := dialWS(t, g, a.token, run)
		if ok, ce := p.serving(t); !ok {
			t.Fatalf("socket %d of the session closed: %v", i+1, ce)
		}
		open = append(open, p)
	}
	ok, ce := dialWS(t, g, a.token, run).serving(t)
	if ok || ce == nil || ce.Code != websocket.ClosePolicyViolation || !strings.Contains(ce.Text, "too many WebSockets") {
		t.Fatalf("the 33rd socket: serving %v, close %v; want 1008 too many WebSockets", ok, ce)
	}
	// Another session is not affected, and the session's first 32 still serve.
	if ok, ce := dialWS(t, g, root.token, run).serving(t); !ok {
		t.Fatalf("another session's socket closed: %v", ce)
	}
	if ok, ce := open[0].serving(t); !ok {
		t.Fatalf("an admitted socket closed: %v", ce)
	}
	// A closed socket frees its slot (once the gateway notices: bounded retries).
	_ = open[0].conn.Close()
	for attempt := 0; ; attempt++ {
		ok, ce := dialWS(t, g, a.token, run).serving(t)
		if ok {
			break
		}
		if attempt == 100 {
			t.Fatalf("the slot of a closed socket was not freed: %v", ce)
		}
	}
}

func TestWebSocketReadLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	root := g.as(t, apiclient.SuperAdmin)
	p := dialWS(t, g, root.token, queuedRun(t, root))
	if ok, ce := p.serving(t); !ok {
		t.Fatalf("socket closed: %v", ce)
	}
	// A masked binary frame header announcing 1 GiB, and no payload.
	frame := []byte{0x82, 0x80 | 127}
	frame = binary.BigEndian.AppendUint64(frame, 1<<30)
	frame = append(frame, 1, 2, 3, 4)
	if _, err := p.conn.UnderlyingConn().Write(frame); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.closed:
		ce, ok := err.(*websocket.CloseError)
		if !ok || ce.Code != websocket.CloseMessageTooBig {
			t.Fatalf("socket ended with %v, want close 1009", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the gateway still waits for the 1 GiB message")
	}
}
