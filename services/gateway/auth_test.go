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

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testenv"
	"github.com/testum/testum/services/gateway"
)

// refusal tells how the gateway answered: "anon" (401), "denied" (403 by
// the permission table) or "" (let through to the handler).
func refusal(r reply) string {
	var e apiclient.Error
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
		c := g.anon(t)
		if role != "" {
			c.login(g.account(t, apiclient.Role(role)))
		}
		for _, rt := range routes {
			r := c.raw(rt.Method, path(rt.Path), "{}")
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
				c.login(g.account(t, apiclient.Role(role)))
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
	ctx := t.Context()
	c := g.as(t, apiclient.SuperAdmin)
	for range 3 { // activity keeps the session alive
		e.clock.Advance(14 * time.Minute)
		got(c.MeWithResponse(ctx)).want(t, http.StatusOK)
	}
	e.clock.Advance(15*time.Minute + time.Second)
	got(c.MeWithResponse(ctx)).want(t, http.StatusUnauthorized)

	c.login(rootName, rootKey)
	for i := 0; i < 24*6-1; i++ { // active every 10 minutes, for 24 hours
		e.clock.Advance(10 * time.Minute)
		got(c.MeWithResponse(ctx)).want(t, http.StatusOK)
	}
	e.clock.Advance(10*time.Minute + time.Second)
	got(c.MeWithResponse(ctx)).want(t, http.StatusUnauthorized)
}

func TestConfiguredLifetimes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(func(c *gateway.Config) { c.SessionMax = 12 * time.Hour; c.SessionIdle = 5 * time.Minute })
	c := g.as(t, apiclient.SuperAdmin)
	e.clock.Advance(5*time.Minute + time.Second)
	got(c.MeWithResponse(t.Context())).want(t, http.StatusUnauthorized)
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
	c := g1.anon(t)
	lr := c.login(rootName, rootKey)
	fresh := g1.anon(t)
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
	ctx := t.Context()
	c := g.as(t, apiclient.SuperAdmin)

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
	probe := g.anon(t)
	probe.token = good
	got(probe.MeWithResponse(ctx)).want(t, http.StatusOK) // the hand-made key is right

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
		p := g.anon(t)
		p.token = tok
		if r := got(p.MeWithResponse(ctx)).reply(t); r.Status != http.StatusUnauthorized {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	// A tampered cookie.
	p := g.anon(t)
	p.loginCookie(rootName, rootKey)
	got(p.MeWithResponse(ctx)).want(t, http.StatusOK)
	for _, ck := range p.cookies {
		if ck.Name == gateway.SessionCookie {
			ck.Value = ck.Value[:len(ck.Value)-4] + "abcd"
		}
	}
	got(p.MeWithResponse(ctx)).want(t, http.StatusUnauthorized)
	// The token of a deleted session.
	got(c.LogoutWithResponse(ctx)).want(t, http.StatusNoContent)
	got(c.MeWithResponse(ctx)).want(t, http.StatusUnauthorized)
}

func TestCookieNeedsCSRFHeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	ctx := t.Context()
	c := g.anon(t)
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
	got(c.UserListWithResponse(ctx, nil)).want(t, http.StatusOK)
	x1 := apiclient.UserCreateRequest{Username: "x1", Role: new(apiclient.Admin)}
	r := got(c.UserCreateWithResponse(ctx, x1)).want(t, http.StatusForbidden)
	if !strings.Contains(r.JSON403.Error, gateway.CSRFHeader) {
		t.Fatalf("refusal does not say why: %s", r.Body)
	}
	c.header.Set(gateway.CSRFHeader, "wrong")
	got(c.UserCreateWithResponse(ctx, x1)).want(t, http.StatusForbidden)
	c.header.Set(gateway.CSRFHeader, lr.CsrfToken)
	got(c.UserCreateWithResponse(ctx, x1)).want(t, http.StatusCreated)
}

// watch opens a WebSocket as c on a queued run and returns a channel that
// gets the close error.
func watch(t *testing.T, g *gw, c *caller, origin string) (chan error, *http.Response, error) {
	t.Helper()
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	p, resp, err := openWS(t, g, c.token, queuedRun(t, g.as(t, apiclient.SuperAdmin)), h)
	if err != nil {
		return nil, resp, err
	}
	return p.closed, resp, nil
}

func TestSessionEndClosesWebSocket(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	ctx := t.Context()
	root := g.as(t, apiclient.SuperAdmin)
	for _, how := range []string{"logout", "rotate", "delete"} {
		u := root.createUser("ws-"+how, apiclient.Admin)
		c := g.anon(t)
		c.login(u.User.Username, u.MasterKey)
		closed, _, err := watch(t, g, c, "")
		if err != nil {
			t.Fatal(err)
		}
		old := c.token
		switch how {
		case "logout":
			got(c.LogoutWithResponse(ctx)).want(t, http.StatusNoContent)
		case "rotate":
			r := got(c.RotateMasterKeyWithResponse(ctx, apiclient.MasterKeyRequest{CurrentPassword: u.MasterKey})).want(t, http.StatusOK)
			if nk := r.JSON200.MasterKey; nk == "" || nk == u.MasterKey {
				t.Fatalf("rotation gave %s", r.Body)
			}
			if lr := got(g.anon(t).AuthLoginWithResponse(ctx, apiclient.LoginRequest{Username: u.User.Username, Password: u.MasterKey})).reply(t); lr.Status != http.StatusUnauthorized {
				t.Fatalf("the old master key still logs in: %d", lr.Status)
			}
			g.anon(t).login(u.User.Username, r.JSON200.MasterKey)
		case "delete":
			got(root.UserDeleteWithResponse(ctx, u.User.Id)).want(t, http.StatusNoContent)
		}
		stale := g.anon(t)
		stale.token = old
		got(stale.MeWithResponse(ctx)).want(t, http.StatusUnauthorized)
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
	c := g.as(t, apiclient.SuperAdmin)
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
	ctx := t.Context()
	root := g.as(t, apiclient.SuperAdmin)
	self := got(root.MeWithResponse(ctx)).want(t, http.StatusOK).JSON200.User.Id
	for _, r := range []reply{
		got(root.UserDeleteWithResponse(ctx, self)).reply(t),
		got(root.UserUpdateWithResponse(ctx, self, apiclient.UserUpdateRequest{Role: apiclient.Admin})).reply(t),
	} {
		if r.Status != http.StatusConflict || !strings.Contains(string(r.Body), "yourself") {
			t.Fatalf("self change: %d %s", r.Status, r.Body)
		}
	}
	users := *got(root.UserListWithResponse(ctx, nil)).want(t, http.StatusOK).JSON200
	if len(users) != 1 || users[0].Role != apiclient.SuperAdmin {
		t.Fatalf("users changed: %+v", users)
	}
	// With a second super_admin, one may demote the other; then the last
	// one left cannot be demoted or deleted.
	s2 := root.createUser("second", apiclient.SuperAdmin)
	c2 := g.anon(t)
	c2.login("second", s2.MasterKey)
	got(c2.UserUpdateWithResponse(ctx, self, apiclient.UserUpdateRequest{Role: apiclient.ExtendedAdmin})).want(t, http.StatusOK)
	got(root.MeWithResponse(ctx)).want(t, http.StatusUnauthorized) // demotion ended root's session
	got(c2.UserDeleteWithResponse(ctx, s2.User.Id)).want(t, http.StatusConflict)
}

func TestBruteForceLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	ctx := t.Context()
	attacker := g.from(t, "203.0.113.7")
	for i := range 10 {
		if r := got(attacker.AuthLoginWithResponse(ctx, apiclient.LoginRequest{Username: rootName, Password: fmt.Sprintf("guess-%02d-xxxx", i)})).reply(t); r.Status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d %s", i+1, r.Status, r.Body)
		}
	}
	r := got(attacker.AuthLoginWithResponse(ctx, apiclient.LoginRequest{Username: rootName, Password: rootKey})).reply(t)
	if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("11th attempt: %d, Retry-After %q: %s", r.Status, r.Header.Get("Retry-After"), r.Body)
	}
	g.from(t, "198.51.100.9").login(rootName, rootKey)

	// Without trusted proxies, X-Forwarded-For is not believed.
	g2 := e.start(func(c *gateway.Config) { c.TrustedProxies = nil })
	for i := range 11 {
		c := g2.from(t, fmt.Sprintf("192.0.2.%d", i+1))
		r := got(c.AuthLoginWithResponse(ctx, apiclient.LoginRequest{Username: "nobody", Password: "wrong-password"})).reply(t)
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
	ctx := t.Context()
	seen := &testenv.LogBuffer{}
	root := g.anon(t)
	lr := root.login(rootName, rootKey)
	u := root.createUser("leaky", apiclient.ExtendedAdmin)
	root.seen = seen
	c := g.anon(t)
	c.seen = seen
	c.token = lr.AccessToken
	got(c.UserListWithResponse(ctx, nil)).want(t, http.StatusOK)
	got(c.SessionListWithResponse(ctx, nil)).want(t, http.StatusOK)
	got(c.PlatformCreateWithResponse(ctx, apiclient.PlatformRequest{Name: "db1", Host: "127.0.0.1", Username: "u",
		AuthMethod: new(string(apiclient.Password)), Password: new("platform-password-xyz")})).want(t, http.StatusCreated)
	got(c.AuthLoginWithResponse(ctx, apiclient.LoginRequest{Username: "leaky", Password: "wrong-key-abcdef"})).reply(t)
	got(c.RotateMasterKeyWithResponse(ctx, apiclient.MasterKeyRequest{CurrentPassword: "not-my-key-123"})).reply(t)
	entries := *got(c.AuditListWithResponse(ctx, &apiclient.AuditListParams{Limit: new(500)})).want(t, http.StatusOK).JSON200
	if len(entries) < 4 {
		t.Fatalf("audit log has %d entries", len(entries))
	}
	var actions []string
	for _, en := range entries {
		actions = append(actions, fmt.Sprint(en.Action, "/", en.Outcome))
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
	logins := *got(c.AuditListWithResponse(ctx, &apiclient.AuditListParams{Action: new("auth.login"), Actor: new(rootName)})).
		want(t, http.StatusOK).JSON200
	if len(logins) == 0 {
		t.Fatal("no login of root in the audit log")
	}
	for _, l := range logins {
		if l.Action != "auth.login" || l.Actor != rootName {
			t.Fatalf("filter let through %v", l)
		}
	}
	// A since the typed client cannot send.
	if r := c.raw("GET", "/api/audit?since=yesterday", nil); r.Status != http.StatusBadRequest {
		t.Fatalf("since=yesterday: %d %s", r.Status, r.Body)
	}
}
