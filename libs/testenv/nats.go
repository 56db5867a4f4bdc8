package testenv

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSServer is a nats-server with JetStream on loopback.
type NATSServer struct {
	URL    string         // nats://127.0.0.1:PORT, the same across restarts
	Server *server.Server // the running server; replaced by Restart
	opts   server.Options
}

// NATS starts a NATS server with JetStream (file store in a temporary
// directory) on a random loopback port; it shuts down when the test ends.
func NATS(t testing.TB) *NATSServer {
	t.Helper()
	n := &NATSServer{opts: server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true, ServerName: "testenv-" + randomHex(3),
	}}
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
	// Restart binds the port the server got.
	n.opts.Port = n.Server.Addr().(*net.TCPAddr).Port
	t.Cleanup(func() {
		n.Server.Shutdown()
		n.Server.WaitForShutdown()
	})
	return n
}

func (n *NATSServer) start() error {
	opts := n.opts
	s, err := server.NewServer(&opts)
	if err != nil {
		return fmt.Errorf("testenv: nats: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return errors.New("testenv: nats not ready within 30s")
	}
	n.Server = s
	n.URL = s.ClientURL()
	return nil
}

// Restart shuts the server down and starts it again on the same port and
// store: streams survive, clients reconnect.
func (n *NATSServer) Restart(t testing.TB) {
	t.Helper()
	n.Server.Shutdown()
	n.Server.WaitForShutdown()
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
}

// JetStream connects a client to the server, closed when the test ends,
// and returns it with its JetStream context.
func (n *NATSServer) JetStream(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatalf("testenv: nats: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("testenv: jetstream: %v", err)
	}
	return nc, js
}
