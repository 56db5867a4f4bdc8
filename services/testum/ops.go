package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/testum/testum/libs/metrics"
	"github.com/testum/testum/libs/testum"
)

// opsServer is the small HTTP listener of `testum executor`, which serves
// no API: /metrics for the metrics token, /healthz and /readyz. It starts
// before the process connects to anything, so that /readyz says "not
// ready" (503) while it waits for its dependencies.
type opsServer struct {
	token string
	m     *metrics.Metrics
	log   *slog.Logger

	mu    sync.Mutex
	ready func(context.Context) error // nil: not ready yet

	srv  *http.Server
	done chan struct{}
}

// startOps listens on cfg.OpsListen; it returns nil (and serves nothing)
// when no address is set. close stops it.
func startOps(cfg *Config, m *metrics.Metrics, log *slog.Logger, stdout io.Writer) (*opsServer, error) {
	if cfg.OpsListen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.OpsListen)
	if err != nil {
		return nil, fmt.Errorf("TESTUM_OPS_LISTEN %s: %w", cfg.OpsListen, err)
	}
	o := &opsServer{token: cfg.MetricsToken, m: m, log: log.With("component", "ops"), done: make(chan struct{})}
	if o.token == "" {
		o.log.Warn("TESTUM_METRICS_TOKEN is empty: /metrics on the ops listener refuses every scrape")
	}
	o.srv = &http.Server{Handler: o.handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(o.log.Handler(), slog.LevelWarn)}
	go func() {
		defer close(o.done)
		if err := o.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.log.Error("ops listener stopped", "err", err)
		}
	}()
	fmt.Fprintf(stdout, "testum executor ops listener on http://%s\n", ln.Addr())
	return o, nil
}

// setReady makes /readyz answer with check from now on.
func (o *opsServer) setReady(check func(context.Context) error) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ready = check
}

// close stops the listener, letting answers in progress finish briefly.
func (o *opsServer) close() {
	if o == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = o.srv.Shutdown(ctx)
	<-o.done
}

func (o *opsServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", o.readyz)
	scrape := o.m.Handler()
	mux.Handle("GET /metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !metrics.TokenMatches(o.token, strings.TrimSpace(t)) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="testum metrics"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "the metrics token is required", "code": string(testum.CodeUnauthorized)})
			return
		}
		scrape.ServeHTTP(w, r)
	}))
	return mux
}

// readyz answers 200 once the executor's dependencies answer, 503 before
// and whenever one does not; what failed goes to the log only.
func (o *opsServer) readyz(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	check := o.ready
	o.mu.Unlock()
	err := errors.New("still connecting to PostgreSQL and NATS")
	if check != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		err = check(ctx)
		cancel()
	}
	if err != nil {
		o.log.Warn("not ready", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "not ready", "code": string(testum.CodeUnavailable)})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// systemReady is the readiness of a role: PostgreSQL answers and NATS is
// connected.
func systemReady(sys *system) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := sys.st.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if s := sys.nc.Status(); s != nats.CONNECTED {
			return fmt.Errorf("nats: %s", s)
		}
		return nil
	}
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
