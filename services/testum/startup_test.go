package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/testum/testum/libs/testenv"
)

func TestStartupAwait(t *testing.T) {
	down := errors.New("connection refused")
	t.Run("retries until it answers, a line per attempt", func(t *testing.T) {
		var logs testenv.LogBuffer
		s := newStartup(slog.New(slog.NewTextHandler(&logs, nil)))
		calls := 0
		err := s.await(context.Background(), "NATS", func(context.Context) error {
			calls++
			if calls < 3 {
				return down
			}
			if ready, what, last := s.Status(); ready || what != "NATS" || !errors.Is(last, down) {
				t.Errorf("status while waiting: %v %q %v", ready, what, last)
			}
			return nil
		})
		if err != nil || calls != 3 {
			t.Fatalf("await = %v after %d calls, want nil after 3", err, calls)
		}
		lines := strings.Count(logs.String(), `msg="waiting for NATS"`)
		if lines != 2 || !strings.Contains(logs.String(), "connection refused") || !strings.Contains(logs.String(), "next=") {
			t.Errorf("want 2 lines with the error and the next delay, got:\n%s", logs.String())
		}
		s.done()
		if ready, what, last := s.Status(); !ready || what != "" || last != nil {
			t.Errorf("status when done: %v %q %v", ready, what, last)
		}
	})
	t.Run("a permanent error ends the wait", func(t *testing.T) {
		s := newStartup(slog.New(slog.DiscardHandler))
		bad := errors.New("malformed URL")
		calls := 0
		err := s.await(context.Background(), "NATS", func(context.Context) error { calls++; return permanentError{bad} })
		if !errors.Is(err, bad) || calls != 1 {
			t.Fatalf("await = %v after %d calls, want the error after 1", err, calls)
		}
	})
	t.Run("a stop ends the wait", func(t *testing.T) {
		s := newStartup(slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- s.await(ctx, "JetStream", func(context.Context) error { return down })
		}()
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, what, _ := s.Status(); what == "JetStream" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the waiter never reported its wait")
			}
			time.Sleep(10 * time.Millisecond) // polling the waiter's status
		}
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("await after cancel = %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("await did not end after its context")
		}
	})
}
