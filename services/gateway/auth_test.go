package gateway_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"golang.org/x/crypto/hkdf"

	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/services/gateway"
)

// refusal tells how the gateway answered: "anon" (401), "denied" (403 by
// the permission table) or "" (let through to the handler).
func refusal(r response) string {
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &e)
	switch {
	case r.Status == http.StatusUnauthorized:
		return "anon"
	case r.Status == http.StatusForbidden && strings.HasPrefix(e.Error, "role "):
		return "denied"
	}
	return ""
}

// TestEveryRouteEveryRole walks the whole API surface as each role and as
// nobody, and checks the permission table decides every answer.
func TestEveryRouteEveryRole(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	root := g.client(t, nil)
	root.login(rootName, rootKey)
	keys := map[auth.Role]string{}
	for _, r := range []auth.Role{auth.RoleAdmin, auth.RoleExtendedAdmin} {
		keys[r] = root.createUser("user-"+string(r), string(r)).MasterKey
	}
	keys[auth.RoleSuperAdmin] = rootKey
	names := map[auth.Role]string{auth.RoleAdmin: "user-admin", auth.RoleExtendedAdmin: "user-extended_admin", auth.RoleSuperAdmin: rootName}

	routes := g.Routes()
	if len(routes) < 20 {
		t.Fatalf("only %d routes", len(routes))
	}
	for _, rt := range routes {
		if _, known := auth.Required(rt.Action); !known {
			t.Errorf("%s %s: action %q has no permission entry", rt.Method, rt.Path, rt.Action)
		}
	}
	path := func(p string) string {
		p = strings.ReplaceAll(p, ":id", "999999")
		if strings.HasPrefix(p, "/api/sessions/") || strings.HasPrefix(p, "/ws/") {
			p = strings.ReplaceAll(p, "999999", uuid.NewString())
		}
		return p
	}
	for _, role := range []auth.Role{"", auth.RoleAdmin, auth.RoleExtendedAdmin, auth.RoleSuperAdmin} {
		c := g.client(t, nil)
		if role != "" {
			c.login(names[role], keys[role])
		}
		for _, rt := range routes {
			r := c.do(rt.Method, path(rt.Path), "{}")
			need, _ := auth.Required(rt.Action)
			want := ""
			switch {
			case need == auth.Public:
			case role == "":
				want = "anon"
			case !auth.Allowed(role, rt.Action):
				want = "denied"
			}
			if got := refusal(r); got != want {
				t.Errorf("%s %s as %q: %d %s, want %q", rt.Method, rt.Path, role, r.Status, r.Body, want)
			}
			if rt.Path == "/api/auth/logout" && role != "" && r.Status == http.StatusNoContent {
				c.login(names[role], keys[role])
			}
		}
	}
}

// A route whose action is missing from the table is refused to everyone.
func TestUnknownActionRefused(t *testing.T) {
	if auth.Allowed(auth.RoleSuperAdmin, "no.such.action") {
		t.Fatal("an action without a permission entry is allowed")
	}
}

func TestIdleAndAbsoluteExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	c := g.client(t, nil)
	c.login(rootName, rootKey)
	for range 3 { // activity keeps the session alive
		e.clock.Advance(14 * time.Minute)
		c.must(http.StatusOK, "GET", "/api/auth/me", nil)
	}
	e.clock.Advance(15*time.Minute + time.Second)
	c.must(http.StatusUnauthorized, "GET", "/api/auth/me", nil)

	c.login(rootName, rootKey)
	for i := 0; i < 24*6-1; i++ { // active every 10 minutes, for 24 hours
		e.clock.Advance(10 * time.Minute)
		c.must(http.StatusOK, "GET", "/api/auth/me", nil)
	}
	e.clock.Advance(10*time.Minute + time.Second)
	c.must(http.StatusUnauthorized, "GET", "/api/auth/me", nil)
}

func TestConfiguredLifetimes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(func(c *gateway.Config) { c.SessionMax = 12 * time.Hour; c.SessionIdle = 5 * time.Minute })
	c := g.client(t, nil)
	c.login(rootName, rootKey)
	e.clock.Advance(5*time.Minute + time.Second)
	c.must(http.StatusUnauthorized, "GET", "/api/auth/me", nil)
}

func sessionActive(t *testing.T, g *gw, token string) bool {
	t.Helper()
	var claims jwt.RegisteredClaims
	var sid struct {
		SID string `json:"sid"`
	}
	parts := strings.Split(token, ".")
	payload, err := jwt.NewParser().DecodeSegment(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(payload, &claims)
	_ = json.Unmarshal(payload, &sid)
	var active bool
	if err := g.st.Pool().QueryRow(context.Background(), "SELECT active FROM sessions WHERE id = $1", sid.SID).Scan(&active); err != nil {
		t.Fatal(err)
	}
	return active
}

func TestSweepDeactivatesOnceAcrossGateways(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g1, g2 := e.start(nil), e.start(nil)
	c := g1.client(t, nil)
	lr := c.login(rootName, rootKey)
	fresh := g1.client(t, nil)
	e.clock.Advance(16 * time.Minute)
	fr := fresh.login(rootName, rootKey)
	if !sessionActive(t, g1, lr.AccessToken) {
		t.Fatal("the idle session was deactivated before the sweep")
	}
	// While g1 holds the job, g2's tick does nothing.
	ran1, err := g1.st.Once(context.Background(), "session-sweep", func(*store.Tx) error {
		ran2, err := g2.SweepSessions(context.Background())
		if err != nil {
			return err
		}
		if ran2 {
			t.Error("a second gateway ran the sweep while the first held it")
		}
		return nil
	})
	if err != nil || !ran1 {
		t.Fatalf("Once: %v %v", ran1, err)
	}
	ran, err := g2.SweepSessions(context.Background())
	if err != nil || !ran {
		t.Fatalf("sweep: %v %v", ran, err)
	}
	if sessionActive(t, g1, lr.AccessToken) {
		t.Fatal("the sweep left an idle session active")
	}
	if !sessionActive(t, g1, fr.AccessToken) {
		t.Fatal("the sweep ended a fresh session")
	}
}

// testKey derives the signing key as libs/auth does; a test below proves it
// right by getting a token signed with it accepted.
func testKey(t *testing.T) []byte {
	key := make([]byte, 32)
	if _, err := hkdf.New(sha256.New, []byte(secret), nil, []byte("testum session tokens v1")).Read(key); err != nil {
		t.Fatal(err)
	}
	return key
}

func TestTokensRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	c := g.client(t, nil)
	c.login(rootName, rootKey)

	// A session row for hand-made tokens.
	sid := uuid.New()
	jti := "hand-made-jti"
	err := g.st.InTx(context.Background(), func(tx *store.Tx) error {
		_, err := tx.SessionCreate(context.Background(), store.NewSession{ID: sid, UserID: 1, TokenHash: auth.TokenHash(jti),
			Lifetime: time.Hour})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	claims := func(exp bool, expAt time.Time) jwt.MapClaims {
		m := jwt.MapClaims{"sid": sid.String(), "csrf": "x", "jti": jti, "iss": "testum", "sub": "1", "iat": now.Unix()}
		if exp {
			m["exp"] = expAt.Unix()
		}
		return m
	}
	sign := func(m jwt.Claims, method jwt.SigningMethod, key any) string {
		s, err := jwt.NewWithClaims(method, m).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	key := testKey(t)
	good := sign(claims(true, now.Add(time.Hour)), jwt.SigningMethodHS256, key)
	probe := g.client(t, nil)
	probe.token = good
	probe.must(http.StatusOK, "GET", "/api/auth/me", nil) // the hand-made key is right

	valid := c.token
	tampered := valid[:len(valid)-3] + map[bool]string{true: "AAA", false: "BBB"}[strings.HasSuffix(valid, "AAA")]
	cases := map[string]string{
		"alg none":        sign(claims(true, now.Add(time.Hour)), jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType),
		"HS384":           sign(claims(true, now.Add(time.Hour)), jwt.SigningMethodHS384, key),
		"HS512":           sign(claims(true, now.Add(time.Hour)), jwt.SigningMethodHS512, key),
		"wrong key":       sign(claims(true, now.Add(time.Hour)), jwt.SigningMethodHS256, []byte("another key entirely, 32 bytes!!")),
		"expired":         sign(claims(true, now.Add(-time.Second)), jwt.SigningMethodHS256, key),
		"no exp":          sign(claims(false, time.Time{}), jwt.SigningMethodHS256, key),
		"wrong signature": tampered,
		"garbage":         "not.a.token",
	}
	for name, tok := range cases {
		p := g.client(t, nil)
		p.token = tok
		if r := p.do("GET", "/api/auth/me", nil); r.Status != http.StatusUnauthorized {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	// A tampered cookie.
	p := g.client(t, nil)
	p.loginCookie(rootName, rootKey)
	p.must(http.StatusOK, "GET", "/api/auth/me", nil)
	for _, ck := range p.cookies {
		if ck.Name == gateway.SessionCookie {
			ck.Value = ck.Value[:len(ck.Value)-4] + "abcd"
		}
	}
	p.must(http.StatusUnauthorized, "GET", "/api/auth/me", nil)
	// The token of a deleted session.
	c.must(http.StatusNoContent, "POST", "/api/auth/logout", nil)
	c.must(http.StatusUnauthorized, "GET", "/api/auth/me", nil)
}

func TestCookieNeedsCSRFHeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	c := g.client(t, nil)
	lr := c.loginCookie(rootName, rootKey)
	var session *http.Cookie
	for _, ck := range c.cookies {
		if ck.Name == gateway.SessionCookie {
			session = ck
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict", session)
	}
	c.must(http.StatusOK, "GET", "/api/users", nil)
	r := c.must(http.StatusForbidden, "POST", "/api/users", map[string]string{"username": "x1", "role": "admin"})
	if !strings.Contains(string(r.Body), gateway.CSRFHeader) {
		t.Fatalf("refusal does not say why: %s", r.Body)
	}
	c.header[gateway.CSRFHeader] = "wrong"
	c.must(http.StatusForbidden, "POST", "/api/users", map[string]string{"username": "x1", "role": "admin"})
	c.header[gateway.CSRFHeader] = lr.CSRFToken
	c.must(http.StatusCreated, "POST", "/api/users", map[string]string{"username": "x1", "role": "admin"})
}

// watch opens a WebSocket on a queued run and returns a channel that gets
// the close error.
func watch(t *testing.T, g *gw, c *client, origin string) (chan error, *http.Response, error) {
	t.Helper()
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
	h := http.Header{"Authorization": {"Bearer " + c.token}}
	if origin != "" {
		h.Set("Origin", origin)
	}
	conn, resp, err := websocket.DefaultDialer.Dial(strings.Replace(g.URL, "http", "ws", 1)+"/ws/tasks/"+run.ID, h)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { conn.Close() })
	closed := make(chan error, 1)
	go func() {
		_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				closed <- err
				return
			}
		}
	}()
	return closed, resp, nil
}

func TestSessionEndClosesWebSocket(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	root := g.client(t, nil)
	root.login(rootName, rootKey)
	for _, how := range []string{"logout", "rotate", "delete"} {
		u := root.createUser("ws-"+how, "admin")
		c := g.client(t, nil)
		c.login(u.User.Username, u.MasterKey)
		closed, _, err := watch(t, g, c, "")
		if err != nil {
			t.Fatal(err)
		}
		old := c.token
		switch how {
		case "logout":
			c.must(http.StatusNoContent, "POST", "/api/auth/logout", nil)
		case "rotate":
			r := c.must(http.StatusOK, "POST", "/api/auth/master_key", map[string]string{"current_password": u.MasterKey})
			var nk struct {
				MasterKey string `json:"master_key"`
			}
			r.decode(t, &nk)
			if nk.MasterKey == "" || nk.MasterKey == u.MasterKey {
				t.Fatalf("rotation gave %s", r.Body)
			}
			if lr := g.client(t, nil).do("POST", "/api/auth/login", map[string]string{"username": u.User.Username, "password": u.MasterKey}); lr.Status != http.StatusUnauthorized {
				t.Fatalf("the old master key still logs in: %d", lr.Status)
			}
			g.client(t, nil).login(u.User.Username, nk.MasterKey)
		case "delete":
			root.must(http.StatusNoContent, "DELETE", fmt.Sprintf("/api/users/%d", u.User.ID), nil)
		}
		stale := g.client(t, nil)
		stale.token = old
		stale.must(http.StatusUnauthorized, "GET", "/api/auth/me", nil)
		select {
		case err := <-closed:
			var ce *websocket.CloseError
			if !asCloseError(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
				t.Fatalf("%s: websocket ended with %v, want a policy-violation close", how, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the websocket stayed open", how)
		}
	}
}

func asCloseError(err error, ce **websocket.CloseError) bool {
	c, ok := err.(*websocket.CloseError)
	if ok {
		*ce = c
	}
	return ok
}

func TestForeignOriginWebSocketRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(func(c *gateway.Config) { c.AllowedOrigins = []string{"https://console.example.org"} })
	c := g.client(t, nil)
	c.login(rootName, rootKey)
	_, resp, err := watch(t, g, c, "https://evil.example.com")
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: err %v, resp %v", err, resp)
	}
	if _, _, err := watch(t, g, c, "https://console.example.org"); err != nil {
		t.Fatalf("allowed origin refused: %v", err)
	}
	if _, _, err := watch(t, g, c, g.URL); err != nil {
		t.Fatalf("same origin refused: %v", err)
	}
}

func TestSelfAndLastSuperAdminProtected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	root := g.client(t, nil)
	root.login(rootName, rootKey)
	var me struct {
		User struct {
			ID int64 `json:"id"`
		} `json:"user"`
	}
	root.must(http.StatusOK, "GET", "/api/auth/me", nil).decode(t, &me)
	self := fmt.Sprintf("/api/users/%d", me.User.ID)
	for _, r := range []response{
		root.do("DELETE", self, nil),
		root.do("PUT", self, map[string]string{"role": "admin"}),
	} {
		if r.Status != http.StatusConflict || !strings.Contains(string(r.Body), "yourself") {
			t.Fatalf("self change: %d %s", r.Status, r.Body)
		}
	}
	var users []struct {
		Username, Role string
	}
	root.must(http.StatusOK, "GET", "/api/users", nil).decode(t, &users)
	if len(users) != 1 || users[0].Role != "super_admin" {
		t.Fatalf("users changed: %+v", users)
	}
	// With a second super_admin, one may demote the other; then the last
	// one left cannot be demoted or deleted.
	s2 := root.createUser("second", "super_admin")
	c2 := g.client(t, nil)
	c2.login("second", s2.MasterKey)
	c2.must(http.StatusOK, "PUT", self, map[string]string{"role": "extended_admin"})
	root.must(http.StatusUnauthorized, "GET", "/api/auth/me", nil) // demotion ended root's session
	c2.must(http.StatusConflict, "DELETE", fmt.Sprintf("/api/users/%d", s2.User.ID), nil)
}

func TestBruteForceLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	from := func(ip string) *client {
		c := g.client(t, nil)
		c.header["X-Forwarded-For"] = ip
		return c
	}
	attacker := from("203.0.113.7")
	for i := range 10 {
		if r := attacker.do("POST", "/api/auth/login", map[string]string{"username": rootName, "password": fmt.Sprintf("guess-%02d-xxxx", i)}); r.Status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d %s", i+1, r.Status, r.Body)
		}
	}
	r := attacker.do("POST", "/api/auth/login", map[string]string{"username": rootName, "password": rootKey})
	if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("11th attempt: %d, Retry-After %q: %s", r.Status, r.Header.Get("Retry-After"), r.Body)
	}
	from("198.51.100.9").login(rootName, rootKey)

	// Without trusted proxies, X-Forwarded-For is not believed.
	g2 := e.start(func(c *gateway.Config) { c.TrustedProxies = nil })
	for i := range 11 {
		c := g2.client(t, nil)
		c.header["X-Forwarded-For"] = fmt.Sprintf("192.0.2.%d", i+1)
		r := c.do("POST", "/api/auth/login", map[string]string{"username": "nobody", "password": "wrong-password"})
		if i == 10 && r.Status != http.StatusTooManyRequests {
			t.Fatalf("spoofed X-Forwarded-For escaped the limit: %d", r.Status)
		}
	}
}

// TestSecretsNeverLeak greps every log line, every API response but the
// one-time reveals, and the audit log for master keys, tokens and
// passwords.
func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	seen := &syncBuffer{}
	root := g.client(t, nil)
	lr := root.login(rootName, rootKey)
	u := root.createUser("leaky", "extended_admin")
	root.seen = seen
	c := g.client(t, seen)
	c.token = lr.AccessToken
	c.must(http.StatusOK, "GET", "/api/users", nil)
	c.must(http.StatusOK, "GET", "/api/sessions", nil)
	c.must(http.StatusCreated, "POST", "/api/platforms/", map[string]any{"name": "db1", "host": "127.0.0.1",
		"username": "u", "auth_method": "password", "password": "platform-password-xyz"})
	c.do("POST", "/api/auth/login", map[string]string{"username": "leaky", "password": "wrong-key-abcdef"})
	c.do("POST", "/api/auth/master_key", map[string]string{"current_password": "not-my-key-123"})
	r := c.must(http.StatusOK, "GET", "/api/audit?limit=500", nil)
	var entries []map[string]any
	r.decode(t, &entries)
	if len(entries) < 4 {
		t.Fatalf("audit log has %d entries", len(entries))
	}
	var actions []string
	for _, en := range entries {
		actions = append(actions, fmt.Sprint(en["action"], "/", en["outcome"]))
	}
	for _, want := range []string{"auth.login/ok", "auth.login/failed", "user.create/ok", "platform.create/ok"} {
		if !strings.Contains(strings.Join(actions, " "), want) {
			t.Errorf("audit log lacks %s: %v", want, actions)
		}
	}
	hay := seen.String() + e.logs.String()
	for name, s := range map[string]string{"root key": rootKey, "new user's key": u.MasterKey, "token": lr.AccessToken,
		"token signature": lr.AccessToken[strings.LastIndex(lr.AccessToken, ".")+1:], "platform password": "platform-password-xyz",
		"wrong key": "wrong-key-abcdef", "wrong current key": "not-my-key-123", "secret key": secret} {
		if strings.Contains(hay, s) {
			t.Errorf("%s leaked", name)
		}
	}
	// The audit filters work.
	var logins []map[string]any
	c.must(http.StatusOK, "GET", "/api/audit?action=auth.login&actor="+rootName, nil).decode(t, &logins)
	if len(logins) == 0 {
		t.Fatal("no login of root in the audit log")
	}
	for _, l := range logins {
		if l["action"] != "auth.login" || l["actor"] != rootName {
			t.Fatalf("filter let through %v", l)
		}
	}
	c.must(http.StatusBadRequest, "GET", "/api/audit?since=yesterday", nil)
}
