// Package gateway serves testum's REST API, its WebSockets and the console.
// It is stateless: it writes runs to PostgreSQL, publishes them to
// JetStream and relays transcripts from JetStream to WebSocket clients, so
// any number of gateways can serve any run.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/testum/testum/libs/accounts"
	"github.com/testum/testum/libs/api"
	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/logstore"
	"github.com/testum/testum/libs/metrics"
	"github.com/testum/testum/libs/platforms"
	"github.com/testum/testum/libs/runs"
	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// Config tunes a gateway. Zero fields take defaults.
type Config struct {
	RequestTimeout    time.Duration // per-request deadline (default 30s); WebSockets are exempt
	DefaultTimeout    int           // per-host command timeout when a run gives none, seconds (zero: the runs service's default)
	MaxTimeout        int           // largest per-host timeout accepted, seconds (zero: the runs service's default)
	DefaultParallel   int           // hosts in flight when a run gives no parallelism (zero: the runs service's default)
	MaxBodyBytes      int           // request body limit (default 8 MiB)
	ExecutorDeadAfter time.Duration // executors silent this long are shown offline (default 30s)

	ConnectTimeout time.Duration        // SSH connect timeout of platform tests (default 10s)
	HostKeyPolicy  testum.HostKeyPolicy // the global host key policy (default auto_add)
	TargetDeny     sshx.DenyList        // address ranges no platform may have (nil: sshx.DefaultDeny)

	SecretKey      string        // signs session tokens (SECRET_KEY)
	SessionIdle    time.Duration // a session ends after this long without a request (default 15m)
	SessionMax     time.Duration // and this long after login whatever happens (default 24h)
	SessionSweep   time.Duration // how often expired sessions are deactivated (default 5m)
	LoginWindow    time.Duration // failed logins count within this window (default 1m)
	LoginPerIP     int           // failed logins allowed per (username, client address) in the window (default 10)
	LoginPerUser   int           // failed logins per username, any address, past which failing addresses slow down (default 50)
	LoginPerAddr   int           // failed logins allowed per client address, any username, in the window (default 100)
	LoginSlowDown  time.Duration // past LoginPerUser, a failing address waits this long between tries (default 5s)
	WriteTimeout   time.Duration // time to write one response (default 60s); WebSockets are exempt
	DownloadWrite  time.Duration // time to write one log download (default 1h)
	TrustedProxies []string      // addresses whose X-Forwarded-For is believed
	AllowedOrigins []string      // WebSocket origins besides the gateway's own host
	MetricsToken   string        // a bearer token that may read /metrics (TESTUM_METRICS_TOKEN); empty: sessions only
	// WSRecheck is how often an open WebSocket re-reads its session and run
	// from PostgreSQL (default 30s). Broadcasts on NATS close it promptly;
	// this bounds how long a missed broadcast keeps it open.
	WSRecheck time.Duration
	Now       func() time.Time

	Logger *slog.Logger
}

// CheckAndSetDefaults fills zero fields.
func (c *Config) CheckAndSetDefaults() error {
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 8 << 20
	}
	if c.ExecutorDeadAfter == 0 {
		c.ExecutorDeadAfter = store.DefaultExecutorDeadAfter
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = sshx.DefaultConnectTimeout
	}
	if c.HostKeyPolicy == "" {
		c.HostKeyPolicy = testum.HostKeyAutoAdd
	}
	if c.TargetDeny == nil {
		c.TargetDeny = sshx.DefaultDeny()
	}
	if c.SessionIdle == 0 {
		c.SessionIdle = accounts.DefaultSessionIdle
	}
	if c.SessionMax == 0 {
		c.SessionMax = accounts.DefaultSessionMax
	}
	if c.SessionSweep == 0 {
		c.SessionSweep = 5 * time.Minute
	}
	if c.WSRecheck == 0 {
		c.WSRecheck = 30 * time.Second
	}
	if c.LoginWindow == 0 {
		c.LoginWindow = time.Minute
	}
	if c.LoginPerIP == 0 {
		c.LoginPerIP = 10
	}
	if c.LoginPerUser == 0 {
		c.LoginPerUser = 50
	}
	if c.LoginPerAddr == 0 {
		c.LoginPerAddr = 100
	}
	if c.LoginSlowDown == 0 {
		c.LoginSlowDown = 5 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 60 * time.Second
	}
	if c.DownloadWrite == 0 {
		c.DownloadWrite = time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Deps are what a gateway talks to.
type Deps struct {
	Store *store.Store
	NATS  *nats.Conn
	Logs  logstore.Store
	// Metrics is the process's registry (nil: a registry of its own).
	Metrics *metrics.Metrics
}

// Gateway is the HTTP side of testum.
type Gateway struct {
	cfg  Config
	st   *store.Store
	nc   *nats.Conn
	js   jetstream.JetStream
	logs logstore.Store
	log  *slog.Logger
	app  *fiber.App

	tokens  *auth.Tokens
	now     func() time.Time
	proxies proxySet    // TrustedProxies, parsed
	refusal *refusalLog // rate limit of refusal audit entries

	table []Route // the API surface, in registration order
	spec  []byte  // the OpenAPI document, as JSON

	wsOpen wsSessions // WebSockets open per session (ws.go)
	wsHub  wsHub      // the open WebSockets, told of broadcasts (wshub.go)

	runReads readShare[uuid.UUID] // GET /api/runs/{id}, shared by concurrent readers

	m        *metrics.Metrics // metrics.go
	scrape   fiber.Handler    // serves m
	routeSet map[string]bool  // the table's route patterns, the values of the route label

	runs      *runs.Service
	accounts  *accounts.Service
	platforms *platforms.Service
}

// New builds a gateway with every route of routes.go.
func New(cfg Config, deps Deps) (*Gateway, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.NATS == nil || deps.Logs == nil {
		return nil, errors.New("gateway: store, NATS and log store are required")
	}
	js, err := jetstream.New(deps.NATS)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	tokens, err := auth.NewTokens(cfg.SecretKey, cfg.Now)
	if err != nil {
		return nil, err
	}
	proxies, err := parseProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	spec, err := api.OpenAPIJSON()
	if err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, st: deps.Store, nc: deps.NATS, js: js, logs: deps.Logs,
		log: cfg.Logger.With("component", "gateway"), tokens: tokens, now: cfg.Now, proxies: proxies,
		refusal: newRefusalLog(), spec: spec}
	g.runReads.timeout = cfg.RequestTimeout
	g.runs, err = runs.New(runs.Config{DefaultTimeout: cfg.DefaultTimeout, MaxTimeout: cfg.MaxTimeout,
		DefaultParallel: cfg.DefaultParallel, Logger: g.log}, runs.Postgres(deps.Store), runPublisher{nc: deps.NATS, js: js})
	if err != nil {
		return nil, err
	}
	g.accounts, err = accounts.New(accounts.Config{Tokens: tokens, SessionIdle: cfg.SessionIdle, SessionMax: cfg.SessionMax,
		Now: cfg.Now, Logger: g.log, Ended: g.sessionsEnded}, accounts.Postgres(deps.Store))
	if err != nil {
		return nil, err
	}
	g.platforms, err = platforms.New(platforms.Config{TargetDeny: cfg.TargetDeny, ConnectTimeout: cfg.ConnectTimeout,
		HostKeyPolicy: cfg.HostKeyPolicy, Fleet: platforms.FleetOf(deps.Store), Logger: g.log}, platforms.Postgres(deps.Store))
	if err != nil {
		return nil, err
	}
	g.app = fiber.New(fiber.Config{
		AppName:               "testum",
		DisableStartupMessage: true,
		BodyLimit:             cfg.MaxBodyBytes,
		ErrorHandler:          g.errorHandler,
		// A client has ReadTimeout to send a whole request (headers and
		// body: slow senders do not hold connections), WriteTimeout to take
		// a response and IdleTimeout between requests of a kept-alive
		// connection. fasthttp clears the deadlines of a connection it hands
		// to a WebSocket, which keeps its own (pings, wsWriteWait).
		ReadTimeout:  60 * time.Second,
		WriteTimeout: cfg.WriteTimeout,
		IdleTimeout:  120 * time.Second,
		// X-Forwarded-Proto and X-Forwarded-Host are believed only from the
		// configured proxies. X-Forwarded-For is read by clientIP, not by
		// Fiber (which would take the whole raw header as the address).
		EnableTrustedProxyCheck: true,
		TrustedProxies:          cfg.TrustedProxies,
	})
	// fasthttp sets the write deadline once per response, streamed bodies
	// included: a log download gets longer than an API answer.
	g.app.Server().HeaderReceived = g.requestConfig
	g.routes()
	g.initMetrics(deps.Metrics)
	return g, nil
}

// App exposes the Fiber app (tests drive it with app.Test).
func (g *Gateway) App() *fiber.App { return g.app }

// Serve serves HTTP on ln until ctx ends, then shuts down gracefully.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	stopHub, err := g.listenBroadcasts()
	if err != nil {
		return err
	}
	defer stopHub()
	errc := make(chan error, 1)
	go func() { errc <- g.app.Listener(ln) }()
	sweepCtx, stopSweep := context.WithCancel(ctx)
	defer stopSweep()
	go g.sweepLoop(sweepCtx)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.app.ShutdownWithContext(sctx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	// Shutdown closes only the listeners the server has registered: when ctx
	// ends before Listener got that far, close ln here so it returns.
	_ = ln.Close()
	if err := <-errc; err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// withDeadline gives each request a context with a deadline, cancelled when
// the handler returns (Fiber's UserContext is Background otherwise).
func (g *Gateway) withDeadline(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.RequestTimeout)
	defer cancel()
	c.SetUserContext(ctx)
	return c.Next()
}
