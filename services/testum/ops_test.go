package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/testum/testum/libs/metrics"
)

// The ops listener's answers, without a process: not ready until the
// system is open and whenever a dependency fails; metrics for the token
// only, and for nobody when no token is set.
func TestOpsHandler(t *testing.T) {
	t.Parallel()
	do := func(o *opsServer, path, authorization string) int {
		req := httptest.NewRequest("GET", path, nil)
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		w := httptest.NewRecorder()
		o.handler().ServeHTTP(w, req)
		return w.Code
	}
	o := &opsServer{token: "tok-0123456789", m: metrics.New(), log: slog.New(slog.DiscardHandler)}
	steps := []struct {
		name         string
		ready        func(context.Context) error
		path, bearer string
		want         int
	}{
		{"healthz while waiting", nil, "/healthz", "", http.StatusOK},
		{"readyz while waiting", nil, "/readyz", "", http.StatusServiceUnavailable},
		{"readyz once open", func(context.Context) error { return nil }, "/readyz", "", http.StatusOK},
		{"readyz with a dependency down", func(context.Context) error { return errors.New("postgres: down") }, "/readyz", "", http.StatusServiceUnavailable},
		{"metrics without token", nil, "/metrics", "", http.StatusUnauthorized},
		{"metrics wrong token", nil, "/metrics", "Bearer tok-012345678", http.StatusUnauthorized},
		{"metrics token", nil, "/metrics", "Bearer tok-0123456789", http.StatusOK},
		{"no such path", nil, "/api/runs", "", http.StatusNotFound},
	}
	for _, s := range steps {
		o.setReady(s.ready)
		if got := do(o, s.path, s.bearer); got != s.want {
			t.Errorf("%s: %d, want %d", s.name, got, s.want)
		}
	}
	none := &opsServer{m: metrics.New(), log: slog.New(slog.DiscardHandler)}
	if got := do(none, "/metrics", "Bearer "); got != http.StatusUnauthorized {
		t.Errorf("metrics with no token configured and an empty bearer: %d", got)
	}
	var nilOps *opsServer // TESTUM_OPS_LISTEN unset
	nilOps.setReady(nil)
	nilOps.close()
}
