package gateway

import (
	"context"
	"fmt"
	"mime"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/testum/testum/libs/testum"
)

// loginAdmit records a login attempt as a failure before its key is
// checked, then counts: bcrypt takes long enough that a burst of concurrent
// attempts would otherwise all be checked before any was counted. Each
// attempt is committed before it counts, so the last of any set of
// attempts that go on to check their key sees all of them: no more than
// the limit get through, across every gateway. An attempt turned away is
// refunded at once (waiting clients are not kept waiting longer by their
// own retries); the caller refunds one whose key was right.
//
// The limits: LoginPerIP failures per (username, address) and LoginPerAddr
// per address refuse that address until the window frees. LoginPerUser per
// username, from anywhere, only spaces out the tries of addresses that have
// failed for that username (LoginSlowDown): an address that has not been
// failing is never refused, so nobody locks the super_admin out.
func (g *Gateway) loginAdmit(c *fiber.Ctx, ip, username string) (attempt int64, err error) {
	ctx := c.UserContext()
	id, err := g.st.LoginAttempt(ctx, ip, username)
	if err != nil {
		return 0, err
	}
	window := g.cfg.LoginWindow
	n, err := g.st.LoginAttemptCounts(ctx, id, ip, username, window)
	if err != nil {
		g.loginRefund(c, id)
		return 0, err
	}
	now := n.At
	var wait time.Duration
	var reason string
	switch {
	case n.ByPair > int64(g.cfg.LoginPerIP):
		wait, reason = n.OldestPair.Add(window).Sub(now), "too many failed logins for this username from this address"
	case n.ByIP > int64(g.cfg.LoginPerAddr):
		wait, reason = n.OldestIP.Add(window).Sub(now), "too many failed logins from this address"
	case n.ByUser > int64(g.cfg.LoginPerUser) && n.ByPair > 1:
		if next := n.NewestPair.Add(g.cfg.LoginSlowDown); next.After(now) {
			wait, reason = next.Sub(now), "many failed logins for this username: this address must wait between tries"
		}
	}
	if reason == "" {
		return id, nil
	}
	g.loginRefund(c, id)
	retryAfter(c, wait) // at least a second
	g.auditRefusal(c, "login_rate", "auth.login", username, map[string]any{"reason": "rate limited"})
	return 0, testum.Errorf(testum.CodeTooMany, "%s; try again later", reason)
}

// loginRefund forgets an attempt that is no failure; it must happen even
// when the request's context is done.
func (g *Gateway) loginRefund(c *fiber.Ctx, id int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.UserContext()), 5*time.Second)
	defer cancel()
	if err := g.st.LoginRefund(ctx, id); err != nil {
		g.log.Warn("login attempt refund failed", "err", err)
	}
}

// requireJSON refuses a body that is not declared JSON. A cross-site form
// can post text/plain (or urlencoded, or multipart) without a CORS
// preflight, and decode would read a JSON-looking text/plain body all the
// same: a page of another site could log its visitor in as the attacker
// (login CSRF). application/json is never sent cross-site without a
// preflight, which testum does not answer.
func requireJSON(c *fiber.Ctx) error {
	mt, _, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	if err == nil && (mt == fiber.MIMEApplicationJSON || strings.HasSuffix(mt, "+json")) {
		return nil
	}
	return fiber.NewError(fiber.StatusUnsupportedMediaType, "this endpoint takes a JSON body: send Content-Type: application/json")
}

// originAllowed says whether a browser's Origin header names the gateway
// itself or a configured origin. The gateway itself is the host the client
// addressed with the scheme it used: an http:// page of the same host is
// another origin of a TLS gateway (anyone on the path can write that page).
// An https:// origin is taken for a gateway that sees plain http, because
// TLS may end at a proxy that does not say so; a page served over TLS from
// the gateway's own host is no foreign site.
func (g *Gateway) originAllowed(c *fiber.Ctx, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.Path != "" && u.Path != "/" {
		return false
	}
	if strings.EqualFold(u.Host, c.Hostname()) && (u.Scheme == g.scheme(c) || u.Scheme == "https") {
		return true
	}
	for _, a := range g.cfg.AllowedOrigins {
		if strings.EqualFold(strings.TrimSuffix(a, "/"), strings.TrimSuffix(origin, "/")) {
			return true
		}
	}
	return false
}

// checkLoginOrigin refuses a login posted by a page of another site; no
// Origin (curl, API clients) is fine.
func (g *Gateway) checkLoginOrigin(c *fiber.Ctx) error {
	origin := c.Get(fiber.HeaderOrigin)
	if origin == "" || g.originAllowed(c, origin) {
		return nil
	}
	g.auditRefusal(c, "origin", "auth.login", c.Path(), map[string]any{"reason": "login origin not allowed", "origin": truncate(origin, 200)})
	return &testum.Error{Code: testum.CodeForbidden, Reason: "origin_not_allowed",
		Message: fmt.Sprintf("origin %s is not allowed", truncate(origin, 200))}
}

// presentedSession is the session a login request already carries (cookie
// or bearer), if its token is valid: a login replaces it.
func (g *Gateway) presentedSession(c *fiber.Ctx) (uuid.UUID, bool) {
	token, _ := bearer(c)
	if token == "" {
		return uuid.Nil, false
	}
	v, err := g.tokens.Verify(token)
	if err != nil {
		return uuid.Nil, false
	}
	return v.SessionID, true
}
