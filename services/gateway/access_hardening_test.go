package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/google/uuid"
	"github.com/valyala/fasthttp"

	"github.com/testum/testum/services/gateway"
)

// rawLogin posts a login without the harness client (safe from goroutines).
func rawLogin(base, forwardedFor, user, key string) (int, http.Header, error) {
	req, err := http.NewRequest("POST", base+"/api/auth/login", strings.NewReader(`{"username":"`+user+`","password":"`+key+`"}`))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", forwardedFor)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header, nil
}

// from is a client whose requests come through the trusted proxy from ip.
func from(t *testing.T, g *gw, ip string) *client {
	c := g.client(t, nil)
	c.header["X-Forwarded-For"] = ip
	return c
}

func wrongLogin(c *client, user string, i int) response {
	c.t.Helper()
	return c.do("POST", "/api/auth/login", map[string]string{"username": user, "password": fmt.Sprintf("wrong-key-%03d-xxxx", i)})
}

// auditOf returns the audit entries of an action, newest first.
func auditOf(t *testing.T, g *gw, action string) []map[string]any {
	t.Helper()
	root := g.client(t, nil)
	root.header["X-Forwarded-For"] = "127.0.0.254"
	root.login(rootName, rootKey)
	var out []map[string]any
	root.must(http.StatusOK, "GET", "/api/audit?limit=1000&action="+action, nil).decode(t, &out)
	return out
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, h, err := rawLogin(g.URL, "127.0.0.20", rootName, fmt.Sprintf("wrong-key-%03d-xxxx", i))
			statuses[i], errs[i] = st, err
			if h != nil {
				retry[i] = h.Get("Retry-After")
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
	from(t, g, "127.0.0.20").login(rootName, rootKey)

	// A successful login counts as no failure either.
	c := from(t, g, "127.0.0.21")
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
		c := from(t, g, fmt.Sprintf("127.0.0.%d", 30+a))
		for range 10 {
			if r := wrongLogin(c, rootName, n); r.Status != http.StatusUnauthorized {
				t.Fatalf("failure %d: %d %s", n, r.Status, r.Body)
			}
			n++
		}
	}
	// From an address that has not been failing, the right key works.
	from(t, g, "127.0.0.99").login(rootName, rootKey)
	// From one that has, the limit of that pair holds.
	if r := from(t, g, "127.0.0.30").do("POST", "/api/auth/login", map[string]string{"username": rootName, "password": rootKey}); r.Status != http.StatusTooManyRequests {
		t.Fatalf("failing address: %d %s", r.Status, r.Body)
	}
	// A new address gets its first try; after a failure, while the username
	// is under attack, it waits a few seconds between tries.
	c := from(t, g, "127.0.0.40")
	if r := wrongLogin(c, rootName, 100); r.Status != http.StatusUnauthorized {
		t.Fatalf("first try of a new address: %d %s", r.Status, r.Body)
	}
	r := c.do("POST", "/api/auth/login", map[string]string{"username": rootName, "password": rootKey})
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
		c := from(t, g, fmt.Sprintf("127.9.9.%d, 127.0.0.50", i+1))
		if r := wrongLogin(c, "someone", i); r.Status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, r.Status)
		}
	}
	if r := wrongLogin(from(t, g, "127.9.9.200,127.0.0.50"), "someone", 11); r.Status != http.StatusTooManyRequests {
		t.Fatalf("a made-up X-Forwarded-For prefix reset the limit: %d %s", r.Status, r.Body)
	}
	for _, en := range auditOf(t, g, "auth.login") {
		if en["target"] == "someone" && en["ip"] != "127.0.0.50" {
			t.Fatalf("audit records address %q, want 127.0.0.50", en["ip"])
		}
	}
	// A chain of trusted proxies is skipped; the hop left of it is the client.
	c := from(t, g, "127.9.9.9, 127.0.0.51, 127.0.0.60")
	c.login(rootName, rootKey)
	var sessions []map[string]any
	c.must(http.StatusOK, "GET", "/api/sessions", nil).decode(t, &sessions)
	found := false
	for _, s := range sessions {
		found = found || s["ip"] == "127.0.0.51"
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
	c := g.client(t, nil)
	old := c.login(rootName, rootKey).AccessToken
	c.login(rootName, rootKey) // sends the old token as Bearer
	stale := g.client(t, nil)
	stale.token = old
	stale.must(http.StatusUnauthorized, "GET", "/api/auth/me", nil)
	c.must(http.StatusOK, "GET", "/api/auth/me", nil)

	k := g.client(t, nil)
	k.loginCookie(rootName, rootKey)
	oldCookies := k.cookies
	r := k.must(http.StatusOK, "POST", "/api/auth/login", map[string]string{"username": rootName, "password": rootKey})
	k.cookies = oldCookies
	k.must(http.StatusUnauthorized, "GET", "/api/auth/me", nil)
	var lr struct {
		AccessToken string `json:"access_token"`
	}
	r.decode(t, &lr)
	fresh := g.client(t, nil)
	fresh.token = lr.AccessToken
	fresh.must(http.StatusOK, "GET", "/api/auth/me", nil)
}

// Item 11: a cross-site form cannot post a login.
func TestLoginRefusesFormsAndForeignOrigins(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(func(c *gateway.Config) { c.AllowedOrigins = []string{"https://console.example.org"} })
	body := map[string]string{"username": rootName, "password": rootKey}
	form := "--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--x--\r\n"
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
		c := g.client(t, nil)
		c.header["Content-Type"] = ct
		var b any = body
		if strings.HasPrefix(ct, "multipart/") {
			b = form // a well-formed one: fasthttp refuses a broken one by itself
		}
		if r := c.do("POST", "/api/auth/login", b); r.Status != http.StatusUnsupportedMediaType || !strings.Contains(string(r.Body), "application/json") ||
			errCode(t, r) != "unsupported_media_type" {
			t.Errorf("Content-Type %q: %d %s", ct, r.Status, r.Body)
		}
	}
	c := g.client(t, nil)
	c.header["Content-Type"] = "application/json; charset=utf-8"
	c.must(http.StatusOK, "POST", "/api/auth/login", body)

	host := strings.TrimPrefix(g.URL, "http://")
	for origin, want := range map[string]int{
		"https://evil.example.com":    http.StatusForbidden,
		"null":                        http.StatusForbidden,
		g.URL:                         http.StatusOK, // same origin
		"https://console.example.org": http.StatusOK, // allowed
	} {
		c := g.client(t, nil)
		c.header["Origin"] = origin
		if r := c.do("POST", "/api/auth/login", body); r.Status != want {
			t.Errorf("Origin %s: %d, want %d: %s", origin, r.Status, want, r.Body)
		}
	}
	// TLS ended by the trusted proxy: the http origin of the same host is
	// another origin.
	tls := g.client(t, nil)
	tls.header["X-Forwarded-Proto"] = "https"
	tls.header["Origin"] = "http://" + host
	if r := tls.must(http.StatusForbidden, "POST", "/api/auth/login", body); errCode(t, r) != "origin_not_allowed" {
		t.Errorf("foreign origin: code %q", errCode(t, r))
	}
	tls.header["Origin"] = "https://" + host
	tls.must(http.StatusOK, "POST", "/api/auth/login", body)
}

// Item 12: refused tokens and CSRF refusals are audited, once per address
// and kind a minute, with the count of those folded in.
func TestRefusalsAuditedWithoutFlooding(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	bad := from(t, g, "127.0.0.70")
	bad.token = "not.a.token"
	for range 20 {
		bad.must(http.StatusUnauthorized, "GET", "/api/platforms/", nil)
	}
	tokenEntries := func() []map[string]any {
		var out []map[string]any
		for _, en := range auditOf(t, g, "auth.token") {
			if en["ip"] == "127.0.0.70" {
				out = append(out, en)
			}
		}
		return out
	}
	if got := tokenEntries(); len(got) != 1 || got[0]["outcome"] != "denied" {
		t.Fatalf("20 refused tokens: %d audit entries %v, want 1", len(got), got)
	}
	e.clock.Advance(61 * time.Second)
	bad.must(http.StatusUnauthorized, "GET", "/api/platforms/", nil)
	got := tokenEntries()
	if len(got) != 2 {
		t.Fatalf("after a minute: %d entries", len(got))
	}
	details, _ := got[0]["details"].(map[string]any)
	if details["folded_before"] != float64(19) {
		t.Fatalf("the second entry does not count the folded refusals: %v", details)
	}
	if strings.Contains(fmt.Sprint(got), "not.a.token") {
		t.Fatal("the refused token reached the audit log")
	}

	// An ended session's token is refused and audited the same way.
	ended := from(t, g, "127.0.0.71")
	ended.login(rootName, rootKey)
	ended.must(http.StatusNoContent, "POST", "/api/auth/logout", nil)
	ended.must(http.StatusUnauthorized, "GET", "/api/auth/me", nil)

	k := from(t, g, "127.0.0.72")
	k.loginCookie(rootName, rootKey)
	for range 5 {
		k.must(http.StatusForbidden, "POST", "/api/users", map[string]string{"username": "x1", "role": "admin"})
	}
	var csrf, endedTok int
	for _, en := range auditOf(t, g, "access.denied") {
		if d, _ := en["details"].(map[string]any); en["ip"] == "127.0.0.72" && d["kind"] == "csrf" {
			csrf++
			if en["actor"] != rootName {
				t.Errorf("CSRF refusal without its actor: %v", en)
			}
		}
	}
	for _, en := range auditOf(t, g, "auth.token") {
		endedTok += map[bool]int{true: 1}[en["ip"] == "127.0.0.71"]
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
	root := g.client(t, nil)
	root.login(rootName, rootKey)
	r := root.must(http.StatusNotFound, "GET", "/api/keys/identity", nil)
	if !strings.Contains(string(r.Body), "POST /api/keys/identity") || errCode(t, r) != "no_identity" {
		t.Fatalf("404 does not say what to do: %s", r.Body)
	}
	root.must(http.StatusNotFound, "GET", "/api/keys/identity", nil)
	var n int
	if err := g.st.Pool().QueryRow(context.Background(), "SELECT count(*) FROM credentials WHERE name = $1", gateway.IdentityCredential).Scan(&n); err != nil || n != 0 {
		t.Fatalf("after GETs: %d identity credentials (%v)", n, err)
	}
	var made, again, read struct {
		CredentialID int64  `json:"credential_id"`
		PublicKey    string `json:"public_key"`
	}
	root.must(http.StatusCreated, "POST", "/api/keys/identity", nil).decode(t, &made)
	root.must(http.StatusOK, "POST", "/api/keys/identity", nil).decode(t, &again)
	root.must(http.StatusOK, "GET", "/api/keys/identity", nil).decode(t, &read)
	if made.CredentialID == 0 || again != made || read != made || !strings.HasPrefix(made.PublicKey, "ssh-ed25519 ") {
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
	c2 := g2.client(t, nil)
	c2.login(rootName, rootKey)
	c2.must(http.StatusOK, "GET", "/api/keys/identity", nil)
}

// Item 14: every response forbids sniffing, referrers and framing; the API
// is never cached.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	c := g.client(t, nil)
	check := func(what string, r response, api bool) {
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
	check("healthz", c.must(http.StatusOK, "GET", "/healthz", nil), true)
	check("401", c.must(http.StatusUnauthorized, "GET", "/api/auth/me", nil), true)
	check("404", c.must(http.StatusNotFound, "GET", "/api/no/such/route", nil), true)
	check("login", c.must(http.StatusOK, "POST", "/api/auth/login", map[string]string{"username": rootName, "password": rootKey}), true)
	c.login(rootName, rootKey)
	check("list", c.must(http.StatusOK, "GET", "/api/platforms/", nil), true)
	check("console", c.do("GET", "/", nil), false)
}

// Item 15: over TLS (here ended by the trusted proxy) the session cookie is
// __Host- prefixed and Secure; plain http keeps the old name.
func TestSessionCookieOverTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	cookieOf := func(c *client) *http.Cookie {
		for _, ck := range c.cookies {
			if strings.HasSuffix(ck.Name, "testum_session") {
				return ck
			}
		}
		t.Fatalf("no session cookie in %v", c.cookies)
		return nil
	}
	loginVia := func(g *gw, proto string) *client {
		req, _ := http.NewRequest("POST", g.URL+"/api/auth/login", strings.NewReader(`{"username":"`+rootName+`","password":"`+rootKey+`"}`))
		req.Header.Set("Content-Type", "application/json")
		if proto != "" {
			req.Header.Set("X-Forwarded-Proto", proto)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		c := g.client(t, nil)
		c.cookies = resp.Cookies()
		return c
	}
	tls := loginVia(g, "https")
	ck := cookieOf(tls)
	if ck.Name != gateway.SecureSessionCookie || !ck.Secure || !ck.HttpOnly || ck.Path != "/" || ck.Domain != "" {
		t.Fatalf("session cookie over TLS: %+v", ck)
	}
	tls.must(http.StatusOK, "GET", "/api/auth/me", nil) // the new name is read

	plain := loginVia(g, "")
	if ck := cookieOf(plain); ck.Name != gateway.SessionCookie || ck.Secure {
		t.Fatalf("session cookie over http: %+v", ck)
	}
	plain.must(http.StatusOK, "GET", "/api/auth/me", nil)

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
	root := g.client(t, nil)
	root.login(rootName, rootKey)
	var p struct {
		ID int64 `json:"id"`
	}
	root.must(http.StatusCreated, "POST", "/api/platforms/", map[string]any{"name": "p-" + uuid.NewString()[:8],
		"host": "127.0.0.1", "port": 1, "username": "u", "auth_method": "password", "password": "pw"}).decode(t, &p)
	var run struct {
		ID string `json:"id"`
	}
	root.must(http.StatusCreated, "POST", "/api/runs", map[string]any{"command": "true",
		"targets": map[string]any{"platform_ids": []int64{p.ID}}}).decode(t, &run)
	host := strings.TrimPrefix(g.URL, "http://")
	dial := func(origin string) int {
		h := http.Header{"Authorization": {"Bearer " + root.token}, "Origin": {origin}, "X-Forwarded-Proto": {"https"}}
		conn, resp, err := websocket.DefaultDialer.Dial("ws://"+host+"/ws/tasks/"+run.ID, h)
		if err == nil {
			_ = conn.Close()
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
	c := g.client(t, nil)
	r := c.must(http.StatusOK, "GET", "/readyz", nil)
	if strings.TrimSpace(string(r.Body)) != `{"status":"ready"}` {
		t.Fatalf("ready: %s", r.Body)
	}
	g.st.Close() // PostgreSQL is gone for this gateway
	r = c.must(http.StatusServiceUnavailable, "GET", "/readyz", nil)
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
	c := g.client(t, nil)
	c.login(rootName, rootKey)
	closed, _, err := watch(t, g, c, "")
	if err != nil {
		t.Fatal(err)
	}
	c.must(http.StatusNoContent, "POST", "/api/auth/logout", nil)
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
