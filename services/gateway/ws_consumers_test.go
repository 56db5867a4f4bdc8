package gateway_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/bus"
)

// TestWebSocketConsumersEndWithTheSocket checks that each WebSocket's
// transcript consumer is deleted when the socket ends, rather than left on
// the server until its inactive threshold.
func TestWebSocketConsumersEndWithTheSocket(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	root := g.as(t, apiclient.SuperAdmin)
	run := queuedRun(t, root)
	js := e.jetStream(t)
	consumers := func() int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, bus.StreamOutput)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Consumers
	}
	waitFor := func(want int) {
		t.Helper()
		for attempt := 0; ; attempt++ {
			n := consumers()
			if n == want {
				return
			}
			if attempt == 600 { // a hang guard: one minute
				t.Fatalf("%d consumers on %s, want %d", n, bus.StreamOutput, want)
			}
			time.Sleep(100 * time.Millisecond) // polling interval
		}
	}
	base := consumers()

	const sockets = 8
	for round := range 3 {
		var open []*wsPeer
		for range sockets {
			open = append(open, dialWS(t, g, root.token, run))
		}
		waitFor(base + sockets)
		for _, p := range open {
			_ = p.conn.Close() // gone without a close frame, as a closed tab
		}
		waitFor(base)
		t.Logf("round %d: %d sockets came and went, their consumers with them", round+1, sockets)
	}
}

// TestWebSocketConsumersGoWhenIdle checks that a socket's transcript
// consumer asks the server to remove it soon once nobody pulls from it, so
// that the consumers of a gateway that died (and could not delete them)
// do not stay for the client library's five minutes.
func TestWebSocketConsumersGoWhenIdle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	root := g.as(t, apiclient.SuperAdmin)
	run := queuedRun(t, root)
	js := e.jetStream(t)
	dialWS(t, g, root.token, run)
	var infos []*jetstream.ConsumerInfo
	for attempt := 0; len(infos) == 0; attempt++ {
		if attempt == 600 { // a hang guard: one minute
			t.Fatalf("no consumer on %s for an open WebSocket", bus.StreamOutput)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := js.Stream(ctx, bus.StreamOutput)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		list := s.ListConsumers(ctx)
		for ci := range list.Info() {
			infos = append(infos, ci)
		}
		err = list.Err()
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, ci := range infos {
		if th := ci.Config.InactiveThreshold; th <= 0 || th >= time.Minute {
			t.Errorf("consumer %s: inactive threshold %s, want under a minute", ci.Name, th)
		}
	}
}

// TestWebSocketPullsAskForFrequentHeartbeats checks that a socket's pulls
// ask the server for idle heartbeats every few seconds. A consumer whose
// NATS node restarts or dies goes silently; the client library notices
// after two missed heartbeats and makes it anew, so their interval bounds
// how long a watched transcript stalls.
func TestWebSocketPullsAskForFrequentHeartbeats(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	root := g.as(t, apiclient.SuperAdmin)
	run := queuedRun(t, root)
	nc := e.connect(t)
	pulls, err := nc.SubscribeSync("$JS.API.CONSUMER.MSG.NEXT." + bus.StreamOutput + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	dialWS(t, g, root.token, run)
	m, err := pulls.NextMsg(time.Minute) // a hang guard
	if err != nil {
		t.Fatalf("no pull request for an open WebSocket: %v", err)
	}
	var req struct {
		Heartbeat time.Duration `json:"idle_heartbeat"`
	}
	if err := json.Unmarshal(m.Data, &req); err != nil {
		t.Fatalf("pull request %q: %v", m.Data, err)
	}
	if req.Heartbeat <= 0 || req.Heartbeat > 2*time.Second {
		t.Errorf("pull request asks for idle heartbeats every %s, want at most 2s: %s", req.Heartbeat, m.Data)
	}
}
