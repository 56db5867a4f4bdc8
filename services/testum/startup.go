package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	retry "github.com/sethvargo/go-retry"
)

// startup is a role's wait, at start, for what it depends on (PostgreSQL,
// NATS, the JetStream cluster): each is tried with backoff until it answers
// or the role is stopped, with a log line per failed attempt, instead of
// exiting while a cluster is still forming. Status reports the progress,
// for a readiness probe.
type startup struct {
	log *slog.Logger

	mu      sync.Mutex
	waiting string // what it waits for now ("" when nothing)
	lastErr error
	ready   bool
}

func newStartup(log *slog.Logger) *startup { return &startup{log: log} }

// startBackoff paces the tries at start: quick at first, for a dependency
// that is a moment late, then every few seconds, with jitter so that roles
// started together do not knock in step.
func startBackoff() retry.Backoff {
	return retry.WithCappedDuration(5*time.Second, retry.WithJitterPercent(20, retry.NewExponential(250*time.Millisecond)))
}

// Status tells whether every dependency answered; if not, what the role
// waits for now and the last error it got from it.
func (s *startup) Status() (ready bool, waitingFor string, lastErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready, s.waiting, s.lastErr
}

// done records that every dependency answered.
func (s *startup) done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready, s.waiting, s.lastErr = true, "", nil
}

// await calls try until it succeeds, it returns a permanent error, or ctx
// ends (then it returns ctx's error). Each failed attempt is logged with
// what is awaited, the error and the delay before the next one.
func (s *startup) await(ctx context.Context, what string, try func(context.Context) error) error {
	var (
		attempt int
		last    error
	)
	inner := startBackoff()
	b := retry.BackoffFunc(func() (time.Duration, bool) {
		d, stop := inner.Next()
		s.mu.Lock()
		s.waiting, s.lastErr = what, last
		s.mu.Unlock()
		s.log.Warn("waiting for "+what, "attempt", attempt, "err", last, "next", d.Round(time.Millisecond))
		return d, stop
	})
	err := retry.Do(ctx, b, func(ctx context.Context) error {
		attempt++
		last = try(ctx)
		var p permanentError
		switch {
		case last == nil:
			return nil
		case errors.As(last, &p):
			return p.err
		case ctx.Err() != nil:
			return ctx.Err()
		}
		return retry.RetryableError(last)
	})
	if err == nil && attempt > 1 {
		s.log.Info(what+" answered", "attempts", attempt)
	}
	return err
}

// permanentError is an error that waiting cannot cure (a configuration
// error): await returns it at once.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// serveStarting answers on a role's listener while it waits for its
// dependencies: /healthz 200 (the process is up), anything else 503 as
// /readyz answers when a dependency is down. stop hands the listener back,
// still open, for the real server. It works on TCP listeners; on another
// kind it serves nothing and the listener waits (its backlog) as before.
func serveStarting(ln net.Listener, log *slog.Logger) (stop func()) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return func() {}
	}
	hl := &handoverListener{TCPListener: tl}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		// The body of the gateway's own "not ready": what it waits for
		// goes to the log only, as the route is public.
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":"not ready","code":"unavailable"}`))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("serving while starting", "err", err)
		}
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-served
		_ = tl.SetDeadline(time.Time{})
	}
}

// handoverListener is a listener whose Close only stops Accept (through a
// deadline) and leaves the socket open, so that the starting server can
// hand it to the real one without a moment of refused connections.
type handoverListener struct {
	*net.TCPListener
	closed atomic.Bool
}

func (l *handoverListener) Accept() (net.Conn, error) {
	c, err := l.TCPListener.Accept()
	if err != nil && l.closed.Load() {
		return nil, net.ErrClosed
	}
	return c, err
}

func (l *handoverListener) Close() error {
	l.closed.Store(true)
	return l.SetDeadline(time.Now())
}
