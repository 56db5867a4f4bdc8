package gateway

import (
	"context"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// Cookie names. The session cookie is HttpOnly; the CSRF cookie is read by
// the console, which echoes it in the X-CSRF-Token header. Over TLS the
// session cookie is SecureSessionCookie: a browser keeps a __Host- cookie
// only when it is Secure, for the exact host, path /, so neither a plain
// http page nor a sibling subdomain can set or overwrite it. The CSRF
// cookie keeps its name (the console looks it up by name); it needs no
// such protection, since the header must match the token's own claim.
const (
	SessionCookie       = "testum_session"
	SecureSessionCookie = "__Host-testum_session"
	CSRFCookie          = "testum_csrf"
	CSRFHeader          = "X-CSRF-Token"
)

// sessionCookieName is the session cookie's name on a TLS connection or a
// plain one.
func sessionCookieName(tls bool) string {
	if tls {
		return SecureSessionCookie
	}
	return SessionCookie
}

// Principal is who makes a request.
type Principal struct {
	UserID    int64
	Username  string
	Role      auth.Role
	SessionID uuid.UUID
	csrf      string
	viaCookie bool
}

const principalKey = "testum.principal"

// principal returns the request's principal, or nil for anonymous.
func principal(c *fiber.Ctx) *Principal {
	p, _ := c.Locals(principalKey).(*Principal)
	return p
}

// bearer returns the token of a request: the Authorization header for API
// clients, else the session cookie.
func bearer(c *fiber.Ctx) (token string, viaCookie bool) {
	if h := c.Get(fiber.HeaderAuthorization); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t), false
		}
		return "", false
	}
	if t := c.Cookies(SecureSessionCookie); t != "" {
		return t, true
	}
	return c.Cookies(SessionCookie), true
}

// safeMethod is a method that changes nothing.
func safeMethod(m string) bool {
	return m == fiber.MethodGet || m == fiber.MethodHead || m == fiber.MethodOptions
}

// authenticate establishes who is calling: the token names a server-side
// session, which must be active, not idle and not past its absolute end;
// checking it records activity. Public routes skip it. A cookie-borne
// session must prove a state-changing request came from the console.
func (g *Gateway) authenticate(action auth.Action) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if need, known := auth.Required(action); known && need == auth.Public {
			return c.Next()
		}
		if g.scrapeByToken(c, action) {
			return c.Next()
		}
		token, viaCookie := bearer(c)
		if token == "" {
			return testum.Errorf(testum.CodeUnauthorized, "login required")
		}
		p, err := g.checkToken(c.UserContext(), token, true)
		if err != nil {
			if testum.CodeOf(err) == testum.CodeUnauthorized {
				g.auditRefusal(c, "token", "auth.token", c.Method()+" "+c.Path(),
					map[string]any{"reason": "invalid, expired or ended session", "via": map[bool]string{true: "cookie", false: "bearer"}[viaCookie]})
			}
			return err
		}
		p.viaCookie = viaCookie
		if viaCookie && !safeMethod(c.Method()) && !auth.SameCSRF(p.csrf, c.Get(CSRFHeader)) {
			c.Locals(principalKey, p) // names the actor in the audit entry; the request ends here
			g.auditRefusal(c, "csrf", "access.denied", c.Method()+" "+c.Path(), map[string]any{"reason": "missing or wrong " + CSRFHeader})
			return testum.Errorf(testum.CodeForbidden, "missing or wrong %s header", CSRFHeader)
		}
		c.Locals(principalKey, p)
		return c.Next()
	}
}

// checkToken verifies a token and its session; touch records activity.
func (g *Gateway) checkToken(ctx context.Context, token string, touch bool) (*Principal, error) {
	v, err := g.tokens.Verify(token)
	if err != nil {
		return nil, testum.Errorf(testum.CodeUnauthorized, "invalid or expired session")
	}
	var s testum.Session
	if touch {
		s, err = g.st.SessionTouch(ctx, v.SessionID, v.TokenHash, g.cfg.SessionIdle)
	} else {
		s, err = g.st.SessionCheck(ctx, v.SessionID, g.cfg.SessionIdle)
	}
	if store.IsNotFound(err) {
		return nil, testum.Errorf(testum.CodeUnauthorized, "invalid or expired session")
	}
	if err != nil {
		return nil, err
	}
	return &Principal{UserID: s.UserID, Username: s.Username, Role: auth.Role(s.Role), SessionID: v.SessionID, csrf: v.CSRF}, nil
}

// authorize refuses what the permission table does not allow; an action
// missing from the table is refused for everyone. Refusals of a known
// caller are audited.
func (g *Gateway) authorize(action auth.Action) fiber.Handler {
	return func(c *fiber.Ctx) error {
		need, known := auth.Required(action)
		if !known {
			return testum.Errorf(testum.CodeForbidden, "this route has no permission entry")
		}
		if need == auth.Public {
			return c.Next()
		}
		if g.scrapeByToken(c, action) {
			return c.Next()
		}
		p := principal(c)
		if p == nil {
			return testum.Errorf(testum.CodeUnauthorized, "login required")
		}
		if !auth.Allowed(p.Role, action) {
			g.auditAlone(c, "access.denied", c.Method()+" "+c.Path(), map[string]any{"action": string(action), "role": string(p.Role)}, testum.AuditDenied)
			return testum.Errorf(testum.CodeForbidden, "role %s may not %s", p.Role, action)
		}
		return c.Next()
	}
}

// actor is who makes the request, as the domain services see it.
func (g *Gateway) actor(c *fiber.Ctx) auth.Actor {
	a := auth.Actor{IP: g.clientIP(c)}
	if p := principal(c); p != nil {
		a.UserID, a.Username, a.Role = p.UserID, p.Username, p.Role
	}
	return a
}

// auditAlone writes an entry that records no change (a refusal, a failed
// login); a failure to write it is logged, not returned.
func (g *Gateway) auditAlone(c *fiber.Ctx, action, target string, details map[string]any, outcome testum.AuditOutcome) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.UserContext()), 5*time.Second)
	defer cancel()
	if err := g.st.Audit(ctx, g.auditEntry(c, action, target, details, outcome)); err != nil {
		g.log.Error("audit write failed", "action", action, "err", err)
	}
}

func (g *Gateway) auditEntry(c *fiber.Ctx, action, target string, details map[string]any, outcome testum.AuditOutcome) testum.AuditEntry {
	e := testum.AuditEntry{Action: action, Target: target, Details: details, IP: g.clientIP(c), Outcome: outcome}
	if p := principal(c); p != nil {
		id := p.UserID
		e.ActorID, e.Actor = &id, p.Username
	}
	return e
}

// checkOrigin refuses a WebSocket upgrade from a page of another site: a
// browser sends the session cookie with any cross-site WebSocket, so the
// Origin is the only proof. Non-browser clients send no Origin.
func (g *Gateway) checkOrigin(c *fiber.Ctx) error {
	origin := c.Get(fiber.HeaderOrigin)
	if origin == "" || g.originAllowed(c, origin) {
		return c.Next()
	}
	g.auditRefusal(c, "origin", "access.denied", c.Path(), map[string]any{"reason": "websocket origin not allowed", "origin": truncate(origin, 200)})
	return &testum.Error{Code: testum.CodeForbidden, Reason: "origin_not_allowed",
		Message: fmt.Sprintf("origin %s is not allowed", truncate(origin, 200))}
}

// retryAfter sets the Retry-After of a 429.
func retryAfter(c *fiber.Ctx, d time.Duration) {
	secs := int(d.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	c.Locals("retry_after", strconv.Itoa(secs))
}

// recoverPanics turns a handler panic into a 500 without the panic's text.
func (g *Gateway) recoverPanics(c *fiber.Ctx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			g.log.Error("handler panic", "method", c.Method(), "path", c.Path(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fiber.NewError(fiber.StatusInternalServerError, "internal error")
		}
	}()
	return c.Next()
}
