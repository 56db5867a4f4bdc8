package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/google/uuid"
	"github.com/valyala/fasthttp"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/services/gateway"
)

func wrongLogin(c *caller, user string, i int) reply {
	c.t.Helper()
	return got(c.AuthLoginWithResponse(context.Background(), apiclient.LoginRequest{Username: user, Password: fmt.Sprintf("wrong-key-%03d-xxxx", i)})).reply(c.t)
}

// Item 5: a burst of concurrent wrong logins cannot all reach the key
// check: the attempt is counted before bcrypt.
func TestLoginLimitHoldsUnderConcurrency(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	const burst = 30
	statuses := make([]int, burst)
	retry := make([]string, burst)
	errs := make([]error, burst)
	var wg sync.WaitGroup
	for i := range burst {
		c := g.from(t, "127.0.0.20") // one caller a goroutine, made here: anon may fail t
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.AuthLoginWithResponse(context.Background(), apiclient.LoginRequest{Username: rootName, Password: fmt.Sprintf("wrong-key-%03d-xxxx", i)})
			if errs[i] = err; err == nil {
				statuses[i], retry[i] = r.StatusCode(), r.HTTPResponse.Header.Get("Retry-After")
			}
		}()
	}
	wg.Wait()
	var unauthorized, limited int
	for i, st := range statuses {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		switch st {
		case http.StatusUnauthorized:
			unauthorized++
		case http.StatusTooManyRequests:
			limited++
			if retry[i] == "" {
				t.Errorf("a 429 without Retry-After")
			}
		default:
			t.Errorf("login %d: status %d", i, st)
		}
	}
	if unauthorized > 10 || unauthorized+limited != burst {
		t.Fatalf("%d wrong logins checked, %d limited: the limit is 10 a minute", unauthorized, limited)
	}
	// A refused attempt is no failure: once the window passes, the address
	// may try again.
	e.clock.Advance(61 * time.Second)
	g.from(t, "127.0.0.20").login(rootName, rootKey)

	// A successful login counts as no failure either.
	c := g.from(t, "127.0.0.21")
	for range 5 {
		c.login(rootName, rootKey)
	}
	for i := range 10 {
		if r := wrongLogin(c, rootName, i); r.Status != http.StatusUnauthorized {
			t.Fatalf("failure %d after 5 good logins: %d %s", i+1, r.Status, r.Body)
		}
	}
	if r := wrongLogin(c, rootName, 10); r.Status != http.StatusTooManyRequests {
		t.Fatalf("11th failure: %d", r.Status)
	}
}

// Item 6: failures for a username from some addresses never refuse its
// right key from an address that has not been failing.
func TestSuperAdminNotLockedOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	n := 0
	for a := range 5 { // 50 failures for root: the username-wide limit
		c := g.from(t, fmt.Sprintf("127.0.0.%d", 30+a))
		for range 10 {
			if r := wrongLogin(c, rootName, n); r.Status != http.StatusUnauthorized {
				t.Fatalf("failure %d: %d %s", n, r.Status, r.Body)
			}
			n++
		}
	}
	// From an address that has not been failing, the right key works.
	g.from(t, "127.0.0.99").login(rootName, rootKey)
	// From one that has, the limit of that pair holds.
	right := apiclient.LoginRequest{Username: rootName, Password: rootKey}
	if r := got(g.from(t, "127.0.0.30").AuthLoginWithResponse(t.Context(), right)).reply(t); r.Status != http.StatusTooManyRequests {
		t.Fatalf("failing address: %d %s", r.Status, r.Body)
	}
	// A new address gets its first try; after a failure, while the username
	// is under attack, it waits a few seconds between tries.
	c := g.from(t, "127.0.0.40")
	if r := wrongLogin(c, rootName, 100); r.Status != http.StatusUnauthorized {
		t.Fatalf("first try of a new address: %d %s", r.Status, r.Body)
	}
	r := got(c.AuthLoginWithResponse(t.Context(), right)).reply(t)
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); r.Status != http.StatusTooManyRequests || err != nil || ra < 1 || ra > 5 {
		t.Fatalf("second try at once: %d, Retry-After %q", r.Status, r.Header.Get("Retry-After"))
	}
	e.clock.Advance(5 * time.Second)
	c.login(rootName, rootKey)
}

// Item 7: behind a trusted proxy the client is the first untrusted hop from
// the right; what the client wrote to the left of it is ignored.
func TestClientAddressBehindProxy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(func(c *gateway.Config) { c.TrustedProxies = []string{"127.0.0.1", "127.0.0.60/32"} })
	for i := range 10 {
		c := g.from(t, fmt.Sprintf("127.9.9.%d, 127.0.0.50", i+1))
		if r := wrongLogin(c, "someone", i); r.Status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, r.Status)
		}
	}
	if r := wrongLogin(g.from(t, "127.9.9.200,127.0.0.50"), "someone", 11); r.Status != http.StatusTooManyRequests {
		t.Fatalf("a made-up X-Forwarded-For prefix reset the limit: %d %s", r.Status, r.Body)
	}
	for _, en := range auditOf(t, g, "auth.login") {
		if en.Target == "someone" && en.Ip != "127.0.0.50" {
			t.Fatalf("audit records address %q, want 127.0.0.50", en.Ip)
		}
	}
	// A chain of trusted proxies is skipped; the hop left of it is the apiclient.
	c := g.from(t, "127.9.9.9, 127.0.0.51, 127.0.0.60")
	c.login(rootName, rootKey)
	sessions := *got(c.SessionListWithResponse(t.Context(), nil)).want(t, http.StatusOK).JSON200
	found := false
	for _, s := range sessions {
		found = found || s.Ip == "127.0.0.51"
	}
	if !found {
		t.Fatalf("no session from 127.0.0.51: %v", sessions)
	}
}

// Item 10: a login that carries a session ends it.
func TestLoginEndsPresentedSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	ctx := t.Context()
	c := g.anon(t)
	old := c.login(rootName, rootKey).AccessToken
	c.login(rootName, rootKey) // sends the old token as Bearer
	stale := g.anon(t)
	stale.token = old
	got(stale.MeWithResponse(ctx)).want(t, http.StatusUnauthorized)
	got(c.MeWithResponse(ctx)).want(t, http.StatusOK)

	k := g.anon(t)
	k.loginCookie(rootName, rootKey)
	// Logs in again sending the old cookies (and keeps them, not the new ones).
	r := got(k.AuthLoginWithResponse(ctx, apiclient.LoginRequest{Username: rootName, Password: rootKey})).want(t, http.StatusOK)
	got(k.MeWithResponse(ctx)).want(t, http.StatusUnauthorized)
	fresh := g.anon(t)
	fresh.token = r.JSON200.AccessToken
	got(fresh.MeWithResponse(ctx)).want(t, http.StatusOK)
}

// Item 11: a cross-site form cannot post a login.
func TestLoginRefusesFormsAndForeignOrigins(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(func(c *gateway.Config) { c.AllowedOrigins = []string{"https://console.example.org"} })
	ctx := t.Context()
	body := apiclient.LoginRequest{Username: rootName, Password: rootKey}
	jsonBody := `{"username":"` + rootName + `","password":"` + rootKey + `"}`
	form := "--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--x--\r\n"
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
		b := jsonBody
		if strings.HasPrefix(ct, "multipart/") {
			b = form // a well-formed one: fasthttp refuses a broken one by itself
		}
		r := got(g.anon(t).AuthLoginWithBodyWithResponse(ctx, ct, strings.NewReader(b))).reply(t)
		if r.Status != http.StatusUnsupportedMediaType || !strings.Contains(string(r.Body), "application/json") ||
			r.code() != apiclient.ErrorCodeUnsupportedMediaType {
			t.Errorf("Content-Type %q: %d %s", ct, r.Status, r.Body)
		}
	}
	got(g.anon(t).AuthLoginWithBodyWithResponse(ctx, "application/json; charset=utf-8", strings.NewReader(jsonBody))).want(t, http.StatusOK)

	host := strings.TrimPrefix(g.URL, "http://")
	for origin, want := range map[string]int{
		"https://evil.example.com":    http.StatusForbidden,
		"null":                        http.StatusForbidden,
		g.URL:                         http.StatusOK, // same origin
		"https://console.example.org": http.StatusOK, // allowed
	} {
		c := g.anon(t)
		c.header.Set("Origin", origin)
		if r := got(c.AuthLoginWithResponse(ctx, body)).reply(t); r.Status != want {
			t.Errorf("Origin %s: %d, want %d: %s", origin, r.Status, want, r.Body)
		}
	}
	// TLS ended by the trusted proxy: the http origin of the same host is
	// another origin.
	tls := g.anon(t)
	tls.header.Set("X-Forwarded-Proto", "https")
	tls.header.Set("Origin", "http://"+host)
	if r := got(tls.AuthLoginWithResponse(ctx, body)).want(t, http.StatusForbidden); r.JSON403.Code != apiclient.ErrorCodeOriginNotAllowed {
		t.Errorf("foreign origin: code %q", r.JSON403.Code)
	}
	tls.header.Set("Origin", "https://"+host)
	got(tls.AuthLoginWithResponse(ctx, body)).want(t, http.StatusOK)
}

// Item 12: refused tokens and CSRF refusals are audited, once per address
// and kind a minute, with the count of those folded in.
func TestRefusalsAuditedWithoutFlooding(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	ctx := t.Context()
	bad := g.from(t, "127.0.0.70")
	bad.token = "not.a.token"
	for range 20 {
		got(bad.PlatformSearchWithResponse(ctx, nil)).want(t, http.StatusUnauthorized)
	}
	tokenEntries := func() []apiclient.AuditEntry {
		var out []apiclient.AuditEntry
		for _, en := range auditOf(t, g, "auth.token") {
			if en.Ip == "127.0.0.70" {
				out = append(out, en)
			}
		}
		return out
	}
	if got := tokenEntries(); len(got) != 1 || got[0].Outcome != apiclient.AuditEntryOutcomeDenied {
		t.Fatalf("20 refused tokens: %d audit entries %v, want 1", len(got), got)
	}
	e.clock.Advance(61 * time.Second)
	got(bad.PlatformSearchWithResponse(ctx, nil)).want(t, http.StatusUnauthorized)
	entries := tokenEntries()
	if len(entries) != 2 {
		t.Fatalf("after a minute: %d entries", len(entries))
	}
	var details map[string]any
	if entries[0].Details != nil {
		details = *entries[0].Details
	}
	if details["folded_before"] != float64(19) {
		t.Fatalf("the second entry does not count the folded refusals: %v", details)
	}
	if data, _ := json.Marshal(entries); strings.Contains(string(data), "not.a.token") {
		t.Fatal("the refused token reached the audit log")
	}

	// An ended session's token is refused and audited the same way.
	ended := g.from(t, "127.0.0.71")
	ended.login(rootName, rootKey)
	got(ended.LogoutWithResponse(ctx)).want(t, http.StatusNoContent)
	got(ended.MeWithResponse(ctx)).want(t, http.StatusUnauthorized)

	k := g.from(t, "127.0.0.72")
	k.loginCookie(rootName, rootKey)
	for range 5 {
		got(k.UserCreateWithResponse(ctx, apiclient.UserCreateRequest{Username: "x1", Role: new(apiclient.Admin)})).want(t, http.StatusForbidden)
	}
	var csrf, endedTok int
	for _, en := range auditOf(t, g, "access.denied") {
		if en.Ip == "127.0.0.72" && en.Details != nil && (*en.Details)["kind"] == "csrf" {
			csrf++
			if en.Actor != rootName {
				t.Errorf("CSRF refusal without its actor: %v", en)
			}
		}
	}
	for _, en := range auditOf(t, g, "auth.token") {
		endedTok += map[bool]int{true: 1}[en.Ip == "127.0.0.71"]
	}
	if csrf != 1 || endedTok != 1 {
		t.Fatalf("audit entries: %d CSRF refusals (want 1), %d ended-token refusals (want 1)", csrf, endedTok)
	}
}

// Item 13: reading testum's identity creates nothing.
func TestIdentityNotCreatedByGet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	ctx := t.Context()
	root := g.as(t, apiclient.SuperAdmin)
	r := got(root.IdentityGetWithResponse(ctx)).want(t, http.StatusNotFound)
	if !strings.Contains(r.JSON404.Error, "POST /api/keys/identity") || r.JSON404.Code != apiclient.ErrorCodeNoIdentity {
		t.Fatalf("404 does not say what to do: %s", r.Body)
	}
	got(root.IdentityGetWithResponse(ctx)).want(t, http.StatusNotFound)
	var n int
	if err := g.st.Pool().QueryRow(context.Background(), "SELECT count(*) FROM credentials WHERE name = $1", gateway.IdentityCredential).Scan(&n); err != nil || n != 0 {
		t.Fatalf("after GETs: %d identity credentials (%v)", n, err)
	}
	made := *got(root.IdentityCreateWithResponse(ctx)).want(t, http.StatusCreated).JSON201
	again := *got(root.IdentityCreateWithResponse(ctx)).want(t, http.StatusOK).JSON200
	read := *got(root.IdentityGetWithResponse(ctx)).want(t, http.StatusOK).JSON200
	if made.CredentialId == 0 || again != made || read != made || !strings.HasPrefix(made.PublicKey, "ssh-ed25519 ") {
		t.Fatalf("identity: made %+v, again %+v, read %+v", made, again, read)
	}

	// At start (EnsureIdentity, as serve and gateway call it) it is made
	// once, whoever starts first.
	e2 := newEnv(t)
	g2 := e2.start(nil)
	if created, err := gateway.EnsureIdentity(context.Background(), g2.st); err != nil || !created {
		t.Fatalf("EnsureIdentity: %v %v", created, err)
	}
	if created, err := gateway.EnsureIdentity(context.Background(), g2.st); err != nil || created {
		t.Fatalf("second EnsureIdentity: %v %v", created, err)
	}
	got(g2.as(t, apiclient.SuperAdmin).IdentityGetWithResponse(ctx)).want(t, http.StatusOK)
}

// Item 14: every response forbids sniffing, referrers and framing; the API
// is never cached.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	ctx := t.Context()
	c := g.anon(t)
	check := func(what string, r reply, api bool) {
		t.Helper()
		h := r.Header
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" ||
			!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("%s: headers %v", what, h)
		}
		if api && h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", what, h.Get("Cache-Control"))
		}
	}
	status := func(want int, r reply) reply {
		t.Helper()
		if r.Status != want {
			t.Fatalf("%d, want %d: %s", r.Status, want, r.Body)
		}
		return r
	}
	check("healthz", status(http.StatusOK, got(c.HealthzWithResponse(ctx)).reply(t)), true)
	check("401", status(http.StatusUnauthorized, got(c.MeWithResponse(ctx)).reply(t)), true)
	check("404", status(http.StatusNotFound, c.raw("GET", "/api/no/such/route", nil)), true) // outside the document
	check("login", status(http.StatusOK, got(c.AuthLoginWithResponse(ctx, apiclient.LoginRequest{Username: rootName, Password: rootKey})).reply(t)), true)
	c.login(rootName, rootKey)
	check("list", status(http.StatusOK, got(c.PlatformSearchWithResponse(ctx, nil)).reply(t)), true)
	check("console", c.raw("GET", "/", nil), false) // the console's, outside the document
}

// Item 15: over TLS (here ended by the trusted proxy) the session cookie is
// __Host- prefixed and Secure; plain http keeps the old name.
func TestSessionCookieOverTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	ctx := t.Context()
	cookieOf := func(c *caller) *http.Cookie {
		for _, ck := range c.cookies {
			if strings.HasSuffix(ck.Name, "testum_session") {
				return ck
			}
		}
		t.Fatalf("no session cookie in %v", c.cookies)
		return nil
	}
	// loginVia logs in with the cookies; the caller it returns sends only them.
	loginVia := func(g *gw, proto string) *caller {
		via := g.anon(t)
		if proto != "" {
			via.header.Set("X-Forwarded-Proto", proto)
		}
		via.loginCookie(rootName, rootKey)
		c := g.anon(t)
		c.cookies = via.cookies
		return c
	}
	tls := loginVia(g, "https")
	ck := cookieOf(tls)
	if ck.Name != gateway.SecureSessionCookie || !ck.Secure || !ck.HttpOnly || ck.Path != "/" || ck.Domain != "" {
		t.Fatalf("session cookie over TLS: %+v", ck)
	}
	got(tls.MeWithResponse(ctx)).want(t, http.StatusOK) // the new name is read

	plain := loginVia(g, "")
	if ck := cookieOf(plain); ck.Name != gateway.SessionCookie || ck.Secure {
		t.Fatalf("session cookie over http: %+v", ck)
	}
	got(plain.MeWithResponse(ctx)).want(t, http.StatusOK)

	// X-Forwarded-Proto from an untrusted peer is ignored.
	g2 := e.start(func(c *gateway.Config) { c.TrustedProxies = nil })
	if ck := cookieOf(loginVia(g2, "https")); ck.Name != gateway.SessionCookie || ck.Secure {
		t.Fatalf("X-Forwarded-Proto believed from an untrusted peer: %+v", ck)
	}
}

// Item 23: the WebSocket origin check compares the scheme too.
func TestWebSocketOriginScheme(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	root := g.as(t, apiclient.SuperAdmin)
	run := queuedRun(t, root)
	host := strings.TrimPrefix(g.URL, "http://")
	dial := func(origin string) int {
		p, resp, err := openWS(t, g, root.token, run, http.Header{"Origin": {origin}, "X-Forwarded-Proto": {"https"}})
		if err == nil {
			_ = p.conn.Close()
			return http.StatusSwitchingProtocols
		}
		if resp == nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	if st := dial("http://" + host); st != http.StatusForbidden {
		t.Fatalf("http origin for a TLS gateway: %d", st)
	}
	if st := dial("https://" + host); st != http.StatusSwitchingProtocols {
		t.Fatalf("https origin of the same host: %d", st)
	}
}

// Item 23: /readyz tells only ready or not ready; the details are logged.
func TestReadyzSaysOnlyReady(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	ctx := t.Context()
	c := g.anon(t)
	ready := got(c.ReadyzWithResponse(ctx)).want(t, http.StatusOK)
	if strings.TrimSpace(string(ready.Body)) != `{"status":"ready"}` || ready.JSON200.Status != apiclient.StatusStatusReady {
		t.Fatalf("ready: %s", ready.Body)
	}
	g.st.Close() // PostgreSQL is gone for this gateway
	r := got(c.ReadyzWithResponse(ctx)).want(t, http.StatusServiceUnavailable)
	var body map[string]any
	if err := json.Unmarshal(r.Body, &body); err != nil || len(body) != 2 || body["error"] != "not ready" || body["code"] != "unavailable" {
		t.Fatalf("not ready: %s", r.Body)
	}
	if !strings.Contains(e.logs.String(), "not ready: postgres") {
		t.Fatal("the reason is not in the log")
	}
}

// Item 23: the server has read, write and idle timeouts; a log download
// gets a write deadline of its own (fasthttp applies one to a whole
// response, streamed or not, and clears it for a hijacked WebSocket).
func TestServerTimeouts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(func(c *gateway.Config) { c.WriteTimeout = 42 * time.Second; c.DownloadWrite = 3 * time.Hour })
	s := g.App().Server()
	if s.ReadTimeout <= 0 || s.IdleTimeout <= 0 || s.WriteTimeout != 42*time.Second {
		t.Fatalf("timeouts: read %v write %v idle %v", s.ReadTimeout, s.WriteTimeout, s.IdleTimeout)
	}
	if s.HeaderReceived == nil {
		t.Fatal("no per-request configuration")
	}
	for path, want := range map[string]time.Duration{
		"/api/runs/" + uuid.NewString() + "/logs":            3 * time.Hour,
		"/api/runs/" + uuid.NewString() + "/hosts/3/log?x=1": 3 * time.Hour,
		"/api/runs/" + uuid.NewString():                      0,
		"/api/platforms/":                                    0,
	} {
		var h fasthttp.RequestHeader
		h.SetMethod("GET")
		h.SetRequestURI(path)
		if got := s.HeaderReceived(&h).WriteTimeout; got != want {
			t.Errorf("%s: write timeout %v, want %v", path, got, want)
		}
	}
	// The defaults.
	d := gateway.Config{}
	if err := d.CheckAndSetDefaults(); err != nil || d.WriteTimeout != time.Minute || d.DownloadWrite != time.Hour {
		t.Fatalf("defaults: %v %v %v", d.WriteTimeout, d.DownloadWrite, err)
	}
}

// Item 23: a WebSocket outlives the server's write timeout (fasthttp clears
// the deadlines of a hijacked connection; the relay sets its own per
// write): its close frame, sent at the relay's first check two seconds in,
// arrives although WriteTimeout is one second.
func TestWebSocketOutlivesWriteTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(func(c *gateway.Config) { c.WriteTimeout = time.Second })
	c := g.as(t, apiclient.SuperAdmin)
	closed, _, err := watch(t, g, c, "")
	if err != nil {
		t.Fatal(err)
	}
	got(c.LogoutWithResponse(t.Context())).want(t, http.StatusNoContent)
	select {
	case err := <-closed:
		var ce *websocket.CloseError
		if !asCloseError(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
			t.Fatalf("websocket ended with %v, want a policy-violation close", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the websocket stayed open")
	}
}
