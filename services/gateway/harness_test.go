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
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/testum/testum/libs/accounts"
	"github.com/testum/testum/libs/api/apitest"
	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/logstore"
	"github.com/testum/testum/libs/natsembed"
	"github.com/testum/testum/libs/secrets"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testenv"
	"github.com/testum/testum/services/gateway"
)

// TestMain fails the package if a response to a request that named no test
// broke the OpenAPI document (apitest.Main).
func TestMain(m *testing.M) { os.Exit(apitest.Main(testenv.Run(m))) }

// contract is the HTTP client under every request of these tests: it
// checks each response against the OpenAPI document, failing the test the
// request names (caller.Do names it).
var contract = &http.Client{Transport: apitest.Transport(http.DefaultTransport)}

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
	logs  *testenv.LogBuffer

	mu       sync.Mutex
	accounts map[apiclient.Role]account // made by account, one per role
}

// account is a user's name and master key.
type account struct{ name, key string }

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dbURL: testenv.Postgres(t), clock: &clock{t: time.Now().UTC()}, logs: &testenv.LogBuffer{}}
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
	// A deadline of its own (a hang guard): without one each JetStream call
	// gets nats.go's 5 s, which a loaded machine running many embedded
	// servers at once can exceed while the first stream is written.
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := bus.EnsureStreams(sctx, js, bus.StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	return e
}

type gw struct {
	*gateway.Gateway
	URL string
	st  *store.Store
	env *env
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
	nc := e.connect(t)
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
	return &gw{Gateway: g, URL: "http://" + ln.Addr().String(), st: st, env: e}
}

// caller is one client of a gateway: the generated client, whose every
// request carries the caller's token, cookies and extra headers and goes
// through the contract-checking transport.
type caller struct {
	*apiclient.ClientWithResponses
	t       *testing.T
	base    string
	token   string             // Authorization: Bearer
	cookies []*http.Cookie     // or the console's cookies
	header  http.Header        // extra headers (X-Forwarded-For, Origin, ...)
	seen    *testenv.LogBuffer // if set, every response body, for the secret grep
}

// anon returns a caller of g that is not logged in.
func (g *gw) anon(t *testing.T) *caller {
	t.Helper()
	c := &caller{t: t, base: g.URL, header: http.Header{}}
	api, err := apiclient.NewClientWithResponses(g.URL, apiclient.WithHTTPClient(c))
	if err != nil {
		t.Fatal(err)
	}
	c.ClientWithResponses = api
	return c
}

// from returns a caller whose requests come through the trusted proxy
// (loopback) from ip.
func (g *gw) from(t *testing.T, ip string) *caller {
	c := g.anon(t)
	c.header.Set("X-Forwarded-For", ip)
	return c
}

// as returns a new caller logged in (bearer) as a user of role.
func (g *gw) as(t *testing.T, role apiclient.Role) *caller {
	t.Helper()
	c := g.anon(t)
	c.login(g.account(t, role))
	return c
}

// account returns the name and master key of a user of role: root for
// super_admin, else a user root makes on the first call for the role.
func (g *gw) account(t *testing.T, role apiclient.Role) (name, key string) {
	t.Helper()
	if role == apiclient.SuperAdmin {
		return rootName, rootKey
	}
	e := g.env
	e.mu.Lock()
	defer e.mu.Unlock()
	if a, ok := e.accounts[role]; ok {
		return a.name, a.key
	}
	u := g.as(t, apiclient.SuperAdmin).createUser("user-"+string(role), role)
	if e.accounts == nil {
		e.accounts = map[apiclient.Role]account{}
	}
	e.accounts[role] = account{u.User.Username, u.MasterKey}
	return u.User.Username, u.MasterKey
}

// Do sends req as c; the generated client sends every request through it.
func (c *caller) Do(req *http.Request) (*http.Response, error) {
	req = req.WithContext(apitest.WithTest(req.Context(), c.t))
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for _, ck := range c.cookies {
		req.AddCookie(ck)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	resp, err := contract.Do(req)
	if err != nil || c.seen == nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close() // read to the end
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	_, _ = c.seen.Write(body)
	_, _ = c.seen.Write([]byte("\n"))
	return resp, nil
}

// reply is an answer reduced to status, headers and body: what the raw
// helper returns, and what got(...).reply gives of a typed response.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

// code is the machine-readable code of an error reply, "" if the body is
// no Error.
func (r reply) code() apiclient.ErrorCode {
	var e apiclient.Error
	_ = json.Unmarshal(r.Body, &e)
	return e.Code
}

// raw sends a request the generated client cannot make: a walk of the route
// table, a path outside the document, a query value of the wrong type.
// body is sent as is if a string, else as JSON; the answer is still checked
// against the document.
func (c *caller) raw(method, path string, body any) reply {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// answered is what a call of the generated client returned.
type answered[R interface{ StatusCode() int }] struct {
	r   R
	err error
}

// got holds a generated call's results for a check:
// got(c.MeWithResponse(ctx)).want(t, http.StatusOK).
func got[R interface{ StatusCode() int }](r R, err error) answered[R] {
	return answered[R]{r, err}
}

// want fails t unless the call was answered with status; it returns the
// typed response.
func (a answered[R]) want(t *testing.T, status int) R {
	t.Helper()
	if r := a.reply(t); r.Status != status {
		req := responseOf(a.r).Request
		t.Fatalf("%s %s: %d, want %d: %.600s", req.Method, req.URL.RequestURI(), r.Status, status, r.Body)
	}
	return a.r
}

// reply fails t only if the call failed (no answer, or a body that does not
// decode into its typed field); it returns the answer's status, headers and
// body.
func (a answered[R]) reply(t *testing.T) reply {
	t.Helper()
	if a.err != nil {
		t.Fatal(a.err)
	}
	resp := responseOf(a.r)
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: reflect.ValueOf(a.r).Elem().FieldByName("Body").Bytes()}
}

// responseOf is the HTTP response of a generated response type; they all
// have the fields Body and HTTPResponse but no method that returns them.
func responseOf(r any) *http.Response {
	return reflect.ValueOf(r).Elem().FieldByName("HTTPResponse").Interface().(*http.Response)
}

// login logs c in with a bearer token. It sends what c already holds: a
// login that carries a session ends it.
func (c *caller) login(user, key string) *apiclient.LoginResponse {
	c.t.Helper()
	r := got(c.AuthLoginWithResponse(context.Background(), apiclient.LoginRequest{Username: user, Password: key})).want(c.t, http.StatusOK)
	c.token = r.JSON200.AccessToken
	return r.JSON200
}

// loginCookie logs c in the console's way: it keeps the cookies (the CSRF
// token is in the answer), not the token.
func (c *caller) loginCookie(user, key string) *apiclient.LoginResponse {
	c.t.Helper()
	r := got(c.AuthLoginWithResponse(context.Background(), apiclient.LoginRequest{Username: user, Password: key})).want(c.t, http.StatusOK)
	c.cookies = r.HTTPResponse.Cookies()
	return r.JSON200
}

// createUser makes a user through the API and returns it with its key.
func (c *caller) createUser(name string, role apiclient.Role) *apiclient.UserCreated {
	c.t.Helper()
	r := got(c.UserCreateWithResponse(context.Background(), apiclient.UserCreateRequest{Username: name, Role: &role})).want(c.t, http.StatusCreated)
	if r.JSON201.MasterKey == "" {
		c.t.Fatalf("no master key in %s", r.Body)
	}
	return r.JSON201
}

// createPlatform makes a platform through the API and returns its id.
func (c *caller) createPlatform(p apiclient.PlatformRequest) int64 {
	c.t.Helper()
	return got(c.PlatformCreateWithResponse(context.Background(), p)).want(c.t, http.StatusCreated).JSON201.Id
}

// unreachable is a password platform on a closed loopback port: runs on it
// stay queued here (no executor) and never reach a host.
func unreachable(name string) apiclient.PlatformRequest {
	return apiclient.PlatformRequest{Name: name, Host: "127.0.0.1", Port: new(1), Username: "u",
		AuthMethod: new(string(apiclient.Password)), Password: new("pw")}
}

// labels is a platform request's labels as a map.
func labels(t *testing.T, m map[string]string) *apiclient.PlatformRequest_Labels {
	t.Helper()
	var l apiclient.PlatformRequest_Labels
	if err := l.FromLabels(m); err != nil {
		t.Fatal(err)
	}
	return &l
}

// queuedRun makes a run that stays queued (no executor here), so that its
// WebSockets stay open until the test closes them.
func queuedRun(t *testing.T, root *caller) string {
	t.Helper()
	id := root.createPlatform(unreachable("p-" + uuid.NewString()[:8]))
	r := got(root.RunCreateWithResponse(context.Background(), apiclient.RunRequest{Command: new("true"),
		Targets: apiclient.Targets{PlatformIds: &[]int64{id}}})).want(t, http.StatusCreated)
	return r.JSON201.Id.String()
}

// auditOf returns the audit entries of an action, newest first.
func auditOf(t *testing.T, g *gw, action string) []apiclient.AuditEntry {
	t.Helper()
	root := g.from(t, "127.0.0.254")
	root.login(rootName, rootKey)
	return *got(root.AuditListWithResponse(context.Background(), &apiclient.AuditListParams{Limit: new(1000), Action: &action})).
		want(t, http.StatusOK).JSON200
}

// wsPeer is one client WebSocket whose reader reports pongs and the close.
type wsPeer struct {
	conn   *websocket.Conn
	pong   chan struct{}
	closed chan error
}

// openWS opens /ws/tasks/{run} with the bearer token and the headers h; on
// a refused upgrade it returns the answer.
func openWS(t *testing.T, g *gw, token, run string, h http.Header) (*wsPeer, *http.Response, error) {
	t.Helper()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Authorization", "Bearer "+token)
	conn, resp, err := websocket.DefaultDialer.Dial(strings.Replace(g.URL, "http", "ws", 1)+"/ws/tasks/"+run, h)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { conn.Close() })
	p := &wsPeer{conn: conn, pong: make(chan struct{}, 1), closed: make(chan error, 1)}
	conn.SetPongHandler(func(string) error {
		select {
		case p.pong <- struct{}{}:
		default:
		}
		return nil
	})
	go func() {
		_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second)) // a hang guard only
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				p.closed <- err
				return
			}
		}
	}()
	return p, resp, nil
}

// dialWS is openWS that fails t on a refused upgrade.
func dialWS(t *testing.T, g *gw, token, run string) *wsPeer {
	t.Helper()
	p, _, err := openWS(t, g, token, run, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// connect is a client of the env's NATS server, closed when the test ends.
func (e *env) connect(t *testing.T) *nats.Conn {
	t.Helper()
	nc, err := e.ns.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// jetStream is a JetStream client of the env's NATS server.
func (e *env) jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(e.connect(t))
	if err != nil {
		t.Fatal(err)
	}
	return js
}
