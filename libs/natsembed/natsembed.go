// Package natsembed runs the nats-server that `testum serve` embeds: JetStream
// with a file store in the data dir, every write synced, and no network
// listener unless one is asked for (then on loopback, with credentials). It is
// the only production package that imports nats-server.
package natsembed

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Config says how to run the embedded server.
type Config struct {
	StoreDir string // JetStream file store
	// Listen, when set ("127.0.0.1:4222"), opens a client listener so that
	// separate gateway and executor processes can join; it must be a
	// loopback address and requires User and Password.
	Listen   string
	User     string
	Password string
	Logger   *slog.Logger
}

// Server is a running embedded nats-server.
type Server struct {
	srv *server.Server
	cfg Config
}

// Start starts the server and waits until it accepts connections.
func Start(cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, fmt.Errorf("nats: no store dir")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	opts := &server.Options{
		ServerName:         "testum-embedded",
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		SyncAlways:         true, // acknowledged work must be on disk (Jepsen, NATS 2.12.1)
		NoSigs:             true,
		DontListen:         true,
		NoSystemAccount:    false,
		MaxPayload:         1 << 20,
		JetStreamMaxMemory: 256 << 20,
	}
	if cfg.Listen != "" {
		host, portStr, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats listen %q: %w", cfg.Listen, err)
		}
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("nats listen %q: only a loopback address may be exposed", cfg.Listen)
		}
		if cfg.User == "" || cfg.Password == "" {
			return nil, fmt.Errorf("nats listen %q: a user and password are required", cfg.Listen)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return nil, fmt.Errorf("nats listen %q: %w", cfg.Listen, err)
		}
		opts.DontListen = false
		opts.Host, opts.Port = host, port
		opts.Username, opts.Password = cfg.User, cfg.Password
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	srv.SetLoggerV2(&slogAdapter{log: cfg.Logger}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("nats: not ready after 30s (store %s)", cfg.StoreDir)
	}
	return &Server{srv: srv, cfg: cfg}, nil
}

// Connect opens a client connection to the server: in-process when there is
// no listener, otherwise in-process too (it is cheaper than loopback TCP).
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append(opts, nats.InProcessServer(s.srv))
	if s.cfg.User != "" {
		opts = append(opts, nats.UserInfo(s.cfg.User, s.cfg.Password))
	}
	return nats.Connect("", opts...)
}

// ClientURL is the URL other processes use, or "" without a listener.
func (s *Server) ClientURL() string {
	if s.cfg.Listen == "" {
		return ""
	}
	return "nats://" + s.cfg.Listen
}

// Shutdown stops the server and waits for it.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// slogAdapter routes nats-server's log lines into slog.
type slogAdapter struct{ log *slog.Logger }

func (a *slogAdapter) Noticef(format string, v ...any) { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Warnf(format string, v ...any)   { a.log.Warn(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Fatalf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Errorf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Debugf(format string, v ...any)  { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Tracef(format string, v ...any)  {}
