package gateway

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/testum/testum/libs/accounts"
	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// login is the seed's login (password is the master key). It answers with
// the token for API clients (the console uses the cookie) and the CSRF
// token the console echoes.
func (g *Gateway) login(c *fiber.Ctx) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	if err := g.checkLoginOrigin(c); err != nil {
		return err
	}
	var req apiclient.LoginRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	req.Username = strings.TrimSpace(req.Username)
	if req.Username == "" || req.Password == "" {
		return testum.Invalid("username and password are required")
	}
	ctx := c.UserContext()
	ip := g.clientIP(c)
	// No user's name is longer (accounts.ValidUsername): a longer one is counted by
	// its prefix, so that a guess cannot store megabytes per attempt.
	attempt, err := g.loginAdmit(c, ip, truncate(req.Username, 256))
	if err != nil {
		return err
	}
	// A session the request already carries ends: a login always starts a
	// new one (whoever planted or held the old token loses it).
	old, _ := g.presentedSession(c) // uuid.Nil when it carries none
	u, iss, err := g.accounts.Login(ctx, g.client(c), req.Username, req.Password, old)
	if testum.CodeOf(err) == testum.CodeUnauthorized {
		g.m.LoginFailures.Inc()
		return err // the attempt stays recorded: it is a failure
	}
	g.loginRefund(c, attempt)
	if err != nil {
		return err
	}
	g.setSessionCookies(c, iss)
	return c.JSON(apiclient.LoginResponse{AccessToken: iss.Token, TokenType: apiclient.Bearer, ExpiresAt: iss.ExpiresAt,
		CsrfToken: iss.CSRF, User: userWire(u)})
}

// client is where a request comes from, as a session records it.
func (g *Gateway) client(c *fiber.Ctx) accounts.Client {
	return accounts.Client{IP: g.clientIP(c), UserAgent: truncate(c.Get(fiber.HeaderUserAgent), 200)}
}

// setSessionCookies hands a new session to the browser.
func (g *Gateway) setSessionCookies(c *fiber.Ctx, iss auth.Issued) {
	secure := g.isTLS(c)
	c.Cookie(&fiber.Cookie{Name: sessionCookieName(secure), Value: iss.Token, Path: "/", Expires: iss.ExpiresAt,
		HTTPOnly: true, Secure: secure, SameSite: fiber.CookieSameSiteStrictMode})
	c.Cookie(&fiber.Cookie{Name: CSRFCookie, Value: iss.CSRF, Path: "/", Expires: iss.ExpiresAt,
		Secure: secure, SameSite: fiber.CookieSameSiteStrictMode})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (g *Gateway) clearCookies(c *fiber.Ctx) {
	secure := g.isTLS(c)
	names := []string{SessionCookie, CSRFCookie}
	if secure { // a browser takes a __Host- cookie, even an expired one, only over TLS
		names = append(names, SecureSessionCookie)
	}
	for _, name := range names {
		c.Cookie(&fiber.Cookie{Name: name, Value: "", Path: "/", Expires: time.Unix(0, 0), MaxAge: -1,
			HTTPOnly: name != CSRFCookie, Secure: secure, SameSite: fiber.CookieSameSiteStrictMode})
	}
}

func (g *Gateway) logout(c *fiber.Ctx) error {
	if err := g.accounts.Logout(c.UserContext(), g.actor(c), principal(c).SessionID); err != nil {
		return err
	}
	g.clearCookies(c)
	return c.SendStatus(http.StatusNoContent)
}

func (g *Gateway) me(c *fiber.Ctx) error {
	p := principal(c)
	u, err := g.st.UserGet(c.UserContext(), p.UserID)
	if err != nil {
		return err
	}
	return c.JSON(apiclient.Me{User: userWire(u), SessionId: p.SessionID, Permissions: permissionsWire(p.Role),
		IdleTimeoutSeconds: int(g.cfg.SessionIdle / time.Second)})
}

// rotateMasterKey replaces the caller's key with a new generated one,
// returned once; the current key proves it is the user at the keyboard.
// Every session of the user ends and a new one opens.
func (g *Gateway) rotateMasterKey(c *fiber.Ctx) error {
	var req apiclient.MasterKeyRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	key, iss, err := g.accounts.RotateKey(c.UserContext(), g.actor(c), g.client(c), req.CurrentPassword)
	if err != nil {
		return err
	}
	g.setSessionCookies(c, iss)
	c.Set("Cache-Control", "no-store")
	return c.JSON(apiclient.MasterKeyRotated{MasterKey: key, AccessToken: iss.Token, CsrfToken: iss.CSRF, ExpiresAt: iss.ExpiresAt})
}

// userCreate creates a user; the server generates the master key.
func (g *Gateway) userCreate(c *fiber.Ctx) error {
	var req apiclient.UserCreateRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	u, key, err := g.accounts.CreateUser(c.UserContext(), g.actor(c), req.Username, auth.Role(deref(req.Role)))
	if err != nil {
		return err
	}
	c.Set("Cache-Control", "no-store")
	return c.Status(http.StatusCreated).JSON(apiclient.UserCreated{User: userWire(u), MasterKey: key,
		Notice: "the master key is shown once; give it to the user now"})
}

func (g *Gateway) userList(c *fiber.Ctx) error {
	limit, offset, err := page(c)
	if err != nil {
		return err
	}
	users, total, err := g.st.UserList(c.UserContext(), limit, offset)
	if err != nil {
		return err
	}
	out := make([]apiclient.User, len(users))
	for i, u := range users {
		out[i] = userWire(u)
	}
	return sendPage(c, out, int(total), limit, offset)
}

func (g *Gateway) userDelete(c *fiber.Ctx) error {
	id, err := paramID(c, "id")
	if err != nil {
		return err
	}
	if _, err := g.accounts.DeleteUser(c.UserContext(), g.actor(c), id); err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}

// userUpdate changes a user's role.
func (g *Gateway) userUpdate(c *fiber.Ctx) error {
	id, err := paramID(c, "id")
	if err != nil {
		return err
	}
	var req apiclient.UserUpdateRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	out, err := g.accounts.SetRole(c.UserContext(), g.actor(c), id, auth.Role(req.Role))
	if err != nil {
		return err
	}
	return c.JSON(userWire(out))
}

// userResetKey generates a new master key for another user (super_admin),
// shown once; the user's sessions end.
func (g *Gateway) userResetKey(c *fiber.Ctx) error {
	id, err := paramID(c, "id")
	if err != nil {
		return err
	}
	_, key, err := g.accounts.ResetKey(c.UserContext(), g.actor(c), id)
	if err != nil {
		return err
	}
	c.Set("Cache-Control", "no-store")
	return c.JSON(apiclient.MasterKey{MasterKey: key})
}

func (g *Gateway) sessionList(c *fiber.Ctx) error {
	limit, offset, err := page(c)
	if err != nil {
		return err
	}
	all := c.Query("all") == "true"
	list, total, err := g.st.SessionList(c.UserContext(), !all, g.cfg.SessionIdle, limit, offset)
	if err != nil {
		return err
	}
	out := make([]apiclient.Session, len(list))
	for i, s := range list {
		out[i] = sessionWire(s)
	}
	return sendPage(c, out, int(total), limit, offset)
}

func (g *Gateway) sessionDelete(c *fiber.Ctx) error {
	id, err := uuid.Parse(c.Params("id"))
	if err != nil {
		return testum.Invalid("session id must be a UUID")
	}
	if err := g.accounts.EndSession(c.UserContext(), g.actor(c), id); err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}

func (g *Gateway) auditList(c *fiber.Ctx) error {
	limit, offset, err := page(c)
	if err != nil {
		return err
	}
	f := store.AuditFilter{Actor: c.Query("actor"), Action: c.Query("action"), Target: c.Query("target")}
	for name, dst := range map[string]**time.Time{"since": &f.Since, "until": &f.Until} {
		if v := c.Query(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return testum.Invalid("%s must be an RFC 3339 time like 2026-01-02T15:04:05Z", name)
			}
			*dst = &t
		}
	}
	fetch := limit
	if v := c.Query("before_id"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return testum.Invalid("before_id %q: want an audit entry id", v)
		}
		f.BeforeID, fetch = &id, limit+1 // one more says whether a next page follows
	}
	list, total, err := g.st.AuditList(c.UserContext(), f, fetch, offset)
	if err != nil {
		return err
	}
	out := make([]apiclient.AuditEntry, len(list))
	for i, e := range list {
		out[i] = auditEntryWire(e)
	}
	if f.BeforeID != nil {
		return sendKeysetPage(c, out, int(total), limit, func(e apiclient.AuditEntry) string { return strconv.FormatInt(e.Id, 10) })
	}
	return sendPage(c, out, int(total), limit, offset)
}

// SweepSessions ends expired sessions and forgets old failed logins, once
// across every gateway per call; it reports whether this one did it.
func (g *Gateway) SweepSessions(ctx context.Context) (bool, error) {
	return g.accounts.SweepSessions(ctx)
}

func (g *Gateway) sweepLoop(ctx context.Context) {
	t := time.NewTicker(g.cfg.SessionSweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := g.SweepSessions(ctx); err != nil && ctx.Err() == nil {
				g.log.Warn("session sweep failed", "err", err)
			}
			g.flushRefusals(ctx)
		}
	}
}
