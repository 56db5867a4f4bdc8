package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/testum/testum/libs/accounts"
	"github.com/testum/testum/libs/api/apitest"
	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/logstore"
	"github.com/testum/testum/libs/natsembed"
	"github.com/testum/testum/libs/secrets"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testenv"
	"github.com/testum/testum/services/gateway"
)

// TestMain validates every response the tests get through http.DefaultClient
// against the OpenAPI document.
func TestMain(m *testing.M) {
	http.DefaultClient = &http.Client{Transport: apitest.Transport(http.DefaultTransport)}
	os.Exit(apitest.Main(testenv.Run(m)))
}

const (
	rootName = "root"
	rootKey  = "root-master-key-0123456789"
	secret   = "gateway-test-secret-key-0123456789abcdef"
)

// clock is a settable clock shared by the store and the gateway.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is one database and NATS with any number of gateways on them.
type env struct {
	t     *testing.T
	dbURL string
	clock *clock
	ns    *natsembed.Server
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dbURL: testenv.Postgres(t), clock: &clock{t: time.Now().UTC()}, logs: &syncBuffer{}}
	if err := store.Migrate(context.Background(), e.dbURL, nil); err != nil {
		t.Fatal(err)
	}
	ns, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	e.ns = ns
	nc, err := ns.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.EnsureStreams(context.Background(), js, bus.StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	return e
}

type gw struct {
	*gateway.Gateway
	URL string
	st  *store.Store
}

// start runs a gateway on loopback; mod adjusts its config.
func (e *env) start(mod func(*gateway.Config)) *gw {
	t := e.t
	t.Helper()
	ctx := context.Background()
	fk, _ := secrets.GenerateKey()
	kr, err := secrets.ParseKeyring(fk)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := store.Open(ctx, store.Config{URL: e.dbURL, Sealer: kr, Now: e.clock.Now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	acc, err := accounts.New(accounts.Config{}, accounts.Postgres(st))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := acc.BootstrapAdmin(ctx, rootName, rootKey); err != nil {
		t.Fatal(err)
	}
	nc, err := e.ns.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ls, err := logstore.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := gateway.Config{SecretKey: secret, Now: e.clock.Now, Logger: log, TrustedProxies: []string{"127.0.0.1"}}
	if mod != nil {
		mod(&cfg)
	}
	g, err := gateway.New(cfg, gateway.Deps{Store: st, NATS: nc, Logs: ls})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Serve(sctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return &gw{Gateway: g, URL: "http://" + ln.Addr().String(), st: st}
}

// client talks to a gateway as one caller.
type client struct {
	t       *testing.T
	base    string
	token   string            // Authorization: Bearer
	cookies []*http.Cookie    // or the console's cookies
	header  map[string]string // extra headers
	seen    *syncBuffer       // every response body, for the secret grep
}

func (g *gw) client(t *testing.T, seen *syncBuffer) *client {
	return &client{t: t, base: g.URL, header: map[string]string{}, seen: seen}
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

func (c *client) do(method, path string, body any) response {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(apitest.WithTest(context.Background(), c.t), method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for _, ck := range c.cookies {
		req.AddCookie(ck)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if c.seen != nil {
		_, _ = c.seen.Write(data)
		_, _ = c.seen.Write([]byte("\n"))
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

func (c *client) must(want int, method, path string, body any) response {
	c.t.Helper()
	r := c.do(method, path, body)
	if r.Status != want {
		c.t.Fatalf("%s %s: %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	return r
}

type loginResp struct {
	AccessToken string `json:"access_token"`
	CSRFToken   string `json:"csrf_token"`
}

// login logs c in with a bearer token.
func (c *client) login(user, key string) loginResp {
	c.t.Helper()
	r := c.must(http.StatusOK, "POST", "/api/auth/login", map[string]string{"username": user, "password": key})
	var lr loginResp
	r.decode(c.t, &lr)
	c.token = lr.AccessToken
	return lr
}

// loginCookie logs c in the console's way: cookies, CSRF header.
func (c *client) loginCookie(user, key string) loginResp {
	c.t.Helper()
	req, _ := http.NewRequestWithContext(apitest.WithTest(context.Background(), c.t), "POST", c.base+"/api/auth/login", strings.NewReader(`{"username":"`+user+`","password":"`+key+`"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		c.t.Fatalf("login: %d %s", resp.StatusCode, data)
	}
	var lr loginResp
	_ = json.Unmarshal(data, &lr)
	c.cookies = resp.Cookies()
	return lr
}

type created struct {
	User struct {
		ID       int64  `json:"id"`
		Username string `json:"username"`
	} `json:"user"`
	MasterKey string `json:"master_key"`
}

// createUser makes a user through the API (as root) and returns its key.
func (c *client) createUser(name, role string) created {
	c.t.Helper()
	r := c.must(http.StatusCreated, "POST", "/api/users", map[string]string{"username": name, "role": role})
	var cr created
	r.decode(c.t, &cr)
	if cr.MasterKey == "" {
		c.t.Fatalf("no master key in %s", r.Body)
	}
	return cr
}
