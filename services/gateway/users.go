package gateway

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// LoginRequest is the seed's login body; password is the master key.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// LoginResponse carries the token for API clients (the console uses the
// cookie) and the CSRF token the console echoes.
type LoginResponse struct {
	AccessToken string      `json:"access_token"`
	TokenType   string      `json:"token_type"`
	ExpiresAt   time.Time   `json:"expires_at"`
	CSRFToken   string      `json:"csrf_token"`
	User        testum.User `json:"user"`
}

func (g *Gateway) login(c *fiber.Ctx) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	if err := g.checkLoginOrigin(c); err != nil {
		return err
	}
	var req LoginRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	req.Username = strings.TrimSpace(req.Username)
	if req.Username == "" || req.Password == "" {
		return testum.Invalid("username and password are required")
	}
	ctx := c.UserContext()
	ip := g.clientIP(c)
	// No user's name is longer (validUsername): a longer one is counted by
	// its prefix, so that a guess cannot store megabytes per attempt.
	attempt, err := g.loginAdmit(c, ip, truncate(req.Username, 256))
	if err != nil {
		return err
	}
	u, hash, err := g.st.UserByName(ctx, req.Username)
	if err != nil && !store.IsNotFound(err) {
		g.loginRefund(c, attempt)
		return err
	}
	if !auth.CheckKey(hash, req.Password) {
		// The attempt stays recorded: it is a failure.
		g.auditAlone(c, "auth.login", req.Username, map[string]any{"reason": "wrong username or master key"}, "failed")
		return testum.Errorf(testum.CodeUnauthorized, "wrong username or master key")
	}
	g.loginRefund(c, attempt)
	// A session the request already carries ends: a login always starts a
	// new one (whoever planted or held the old token loses it).
	old, replacing := g.presentedSession(c)
	iss, err := g.openSession(c, u.ID, func(tx *store.Tx) error {
		if replacing {
			if _, err := tx.SessionEnd(ctx, old, "replaced by a new login"); err != nil {
				return err
			}
		}
		if err := tx.UserTouchLogin(ctx, u.ID); err != nil {
			return err
		}
		id := u.ID
		return tx.Audit(ctx, testum.AuditEntry{ActorID: &id, Actor: u.Username, Action: "auth.login", Target: u.Username, IP: ip, Outcome: "ok"})
	})
	if err != nil {
		return err
	}
	return c.JSON(LoginResponse{AccessToken: iss.Token, TokenType: "bearer", ExpiresAt: iss.ExpiresAt, CSRFToken: iss.CSRF, User: u})
}

// openSession issues a token and stores its session after whatever fn
// writes, in one transaction, then sets the cookies.
func (g *Gateway) openSession(c *fiber.Ctx, userID int64, fn func(tx *store.Tx) error) (auth.Issued, error) {
	ctx := c.UserContext()
	iss, err := g.tokens.Issue(userID, g.now().Add(g.cfg.SessionMax))
	if err != nil {
		return auth.Issued{}, err
	}
	err = g.st.InTx(ctx, func(tx *store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return tx.SessionCreate(ctx, store.NewSession{ID: iss.SessionID, UserID: userID, TokenHash: iss.TokenHash,
			ExpiresAt: iss.ExpiresAt, IP: g.clientIP(c), UserAgent: truncate(c.Get(fiber.HeaderUserAgent), 200)})
	})
	if err != nil {
		return auth.Issued{}, err
	}
	secure := g.isTLS(c)
	c.Cookie(&fiber.Cookie{Name: sessionCookieName(secure), Value: iss.Token, Path: "/", Expires: iss.ExpiresAt,
		HTTPOnly: true, Secure: secure, SameSite: fiber.CookieSameSiteStrictMode})
	c.Cookie(&fiber.Cookie{Name: CSRFCookie, Value: iss.CSRF, Path: "/", Expires: iss.ExpiresAt,
		Secure: secure, SameSite: fiber.CookieSameSiteStrictMode})
	return iss, nil
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
	p := principal(c)
	ctx := c.UserContext()
	err := g.st.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.SessionEnd(ctx, p.SessionID, "logout"); err != nil {
			return err
		}
		return g.audit(ctx, c, tx, "auth.logout", p.Username, nil)
	})
	if err != nil {
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
	return c.JSON(fiber.Map{"user": u, "session_id": p.SessionID, "permissions": auth.ActionsOf(p.Role),
		"idle_timeout_seconds": int(g.cfg.SessionIdle / time.Second)})
}

// MasterKeyRequest rotates one's own master key; the current key proves
// it is the user at the keyboard.
type MasterKeyRequest struct {
	CurrentPassword string `json:"current_password"`
}

// rotateMasterKey replaces the caller's key with a new generated one,
// returned once; every session of the user ends and a new one opens.
func (g *Gateway) rotateMasterKey(c *fiber.Ctx) error {
	p := principal(c)
	var req MasterKeyRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	ctx := c.UserContext()
	hash, err := g.st.UserKeyHash(ctx, p.UserID)
	if err != nil {
		return err
	}
	if !auth.CheckKey(hash, req.CurrentPassword) {
		g.auditAlone(c, "user.master_key", p.Username, map[string]any{"reason": "wrong current master key"}, "failed")
		return testum.Errorf(testum.CodeForbidden, "the current master key is wrong")
	}
	key, err := auth.GenerateMasterKey()
	if err != nil {
		return err
	}
	newHash, err := auth.HashKey(key)
	if err != nil {
		return err
	}
	iss, err := g.openSession(c, p.UserID, func(tx *store.Tx) error {
		if err := tx.UserSetKey(ctx, p.UserID, newHash); err != nil {
			return err
		}
		ids, err := tx.SessionsEndForUser(ctx, p.UserID, "master key rotated")
		if err != nil {
			return err
		}
		return g.audit(ctx, c, tx, "user.master_key", p.Username, map[string]any{"sessions_ended": len(ids)})
	})
	if err != nil {
		return err
	}
	c.Set("Cache-Control", "no-store")
	return c.JSON(fiber.Map{"master_key": key, "access_token": iss.Token, "csrf_token": iss.CSRF, "expires_at": iss.ExpiresAt})
}

// UserCreateRequest creates a user; the server generates the master key.
type UserCreateRequest struct {
	Username string `json:"username"`
	Role     string `json:"role"`
}

func validUsername(s string) error {
	if len(s) < 2 || len(s) > 64 {
		return testum.Invalid("username must be 2 to 64 characters")
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == '@') {
			return testum.Invalid("username may hold letters, digits and - _ . @ only")
		}
	}
	return nil
}

func validRole(s string) error {
	if !auth.Role(s).Valid() {
		return testum.Invalid("role must be admin, extended_admin or super_admin")
	}
	return nil
}

func (g *Gateway) userCreate(c *fiber.Ctx) error {
	var req UserCreateRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	req.Username = strings.TrimSpace(req.Username)
	if err := validUsername(req.Username); err != nil {
		return err
	}
	if req.Role == "" {
		req.Role = string(auth.RoleAdmin)
	}
	if err := validRole(req.Role); err != nil {
		return err
	}
	key, err := auth.GenerateMasterKey()
	if err != nil {
		return err
	}
	hash, err := auth.HashKey(key)
	if err != nil {
		return err
	}
	p := principal(c)
	ctx := c.UserContext()
	var u testum.User
	err = g.st.InTx(ctx, func(tx *store.Tx) error {
		by := p.UserID
		if u, err = tx.UserCreate(ctx, req.Username, req.Role, hash, &by); err != nil {
			return err
		}
		return g.audit(ctx, c, tx, "user.create", u.Username, map[string]any{"role": u.Role, "id": u.ID})
	})
	if err != nil {
		return err
	}
	c.Set("Cache-Control", "no-store")
	return c.Status(http.StatusCreated).JSON(fiber.Map{"user": u, "master_key": key,
		"notice": "the master key is shown once; give it to the user now"})
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
	return sendPage(c, users, int(total), limit, offset)
}

// changeSuperAdmin guards deleting or demoting a user: never oneself, never
// the last super_admin.
func (g *Gateway) guardSuperAdmins(ctx context.Context, tx *store.Tx, p *Principal, target testum.User, what string) error {
	if target.ID == p.UserID {
		return testum.Conflict("you cannot %s yourself", what)
	}
	if target.Role != string(auth.RoleSuperAdmin) {
		return nil
	}
	ids, err := tx.SuperAdminsLocked(ctx)
	if err != nil {
		return err
	}
	if len(ids) <= 1 {
		return testum.Conflict("cannot %s the last super_admin", what)
	}
	return nil
}

func (g *Gateway) userDelete(c *fiber.Ctx) error {
	id, err := paramID(c, "id")
	if err != nil {
		return err
	}
	p := principal(c)
	ctx := c.UserContext()
	err = g.st.InTx(ctx, func(tx *store.Tx) error {
		u, err := tx.UserGet(ctx, id)
		if err != nil {
			return err
		}
		if err := g.guardSuperAdmins(ctx, tx, p, u, "delete"); err != nil {
			return err
		}
		if _, err = tx.SessionsEndForUser(ctx, id, "user deleted"); err != nil {
			return err
		}
		if err := tx.UserDelete(ctx, id); err != nil {
			return err
		}
		return g.audit(ctx, c, tx, "user.delete", u.Username, map[string]any{"id": id, "role": u.Role})
	})
	if err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}

// UserUpdateRequest changes a user's role.
type UserUpdateRequest struct {
	Role string `json:"role"`
}

func (g *Gateway) userUpdate(c *fiber.Ctx) error {
	id, err := paramID(c, "id")
	if err != nil {
		return err
	}
	var req UserUpdateRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	if err := validRole(req.Role); err != nil {
		return err
	}
	p := principal(c)
	ctx := c.UserContext()
	var out testum.User
	err = g.st.InTx(ctx, func(tx *store.Tx) error {
		u, err := tx.UserGet(ctx, id)
		if err != nil {
			return err
		}
		demotion := auth.Role(req.Role).Rank() < auth.Role(u.Role).Rank()
		if demotion {
			if err := g.guardSuperAdmins(ctx, tx, p, u, "demote"); err != nil {
				return err
			}
		}
		if out, err = tx.UserSetRole(ctx, id, req.Role); err != nil {
			return err
		}
		if req.Role != u.Role {
			// A session carries the role it was opened with in no way, but
			// a demoted user logs in again, as after any change of rights.
			if _, err = tx.SessionsEndForUser(ctx, id, "role changed"); err != nil {
				return err
			}
		}
		return g.audit(ctx, c, tx, "user.role", u.Username, map[string]any{"from": u.Role, "to": req.Role})
	})
	if err != nil {
		return err
	}
	return c.JSON(out)
}

// userResetKey generates a new master key for another user (super_admin),
// shown once; the user's sessions end.
func (g *Gateway) userResetKey(c *fiber.Ctx) error {
	id, err := paramID(c, "id")
	if err != nil {
		return err
	}
	key, err := auth.GenerateMasterKey()
	if err != nil {
		return err
	}
	hash, err := auth.HashKey(key)
	if err != nil {
		return err
	}
	ctx := c.UserContext()
	err = g.st.InTx(ctx, func(tx *store.Tx) error {
		u, err := tx.UserGet(ctx, id)
		if err != nil {
			return err
		}
		if err := tx.UserSetKey(ctx, id, hash); err != nil {
			return err
		}
		if _, err = tx.SessionsEndForUser(ctx, id, "master key reset"); err != nil {
			return err
		}
		return g.audit(ctx, c, tx, "user.reset_key", u.Username, map[string]any{"id": id})
	})
	if err != nil {
		return err
	}
	c.Set("Cache-Control", "no-store")
	return c.JSON(fiber.Map{"master_key": key})
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
	return sendPage(c, list, int(total), limit, offset)
}

func (g *Gateway) sessionDelete(c *fiber.Ctx) error {
	id, err := uuid.Parse(c.Params("id"))
	if err != nil {
		return testum.Invalid("session id must be a UUID")
	}
	ctx := c.UserContext()
	err = g.st.InTx(ctx, func(tx *store.Tx) error {
		s, err := tx.SessionGet(ctx, id)
		if err != nil {
			return err
		}
		if _, err := tx.SessionEnd(ctx, id, "ended by "+principal(c).Username); err != nil {
			return err
		}
		return g.audit(ctx, c, tx, "session.end", s.Username, map[string]any{"session_id": id.String()})
	})
	if err != nil {
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
	list, total, err := g.st.AuditList(c.UserContext(), f, limit, offset)
	if err != nil {
		return err
	}
	return sendPage(c, list, int(total), limit, offset)
}

// SweepSessions ends expired sessions and forgets old failed logins, once
// across every gateway per call; it reports whether this one did it.
func (g *Gateway) SweepSessions(ctx context.Context) (bool, error) {
	var ended []uuid.UUID
	ran, err := g.st.Once(ctx, "session-sweep", func(tx *store.Tx) error {
		ids, err := tx.SessionsExpire(ctx, g.cfg.SessionIdle)
		if err != nil {
			return err
		}
		ended = ids
		return tx.LoginFailuresPrune(ctx, 24*time.Hour)
	})
	if err != nil {
		return ran, err
	}
	if len(ended) > 0 {
		g.log.Info("sessions expired", "count", len(ended))
	}
	return ran, nil
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

// BootstrapAdmin creates the first super_admin when there is no user at
// all: from username/password when given, else with a generated key, which
// it returns (to be printed once). Concurrent gateways create one.
func BootstrapAdmin(ctx context.Context, st *store.Store, username, password string) (created bool, generated string, err error) {
	if username == "" {
		username = "admin"
	}
	if password != "" {
		if err := auth.CheckKeyShape(password); err != nil {
			return false, "", testum.Invalid("ADMIN_PASSWORD: %v", err)
		}
	}
	for range 50 {
		ran, err := st.Once(ctx, "bootstrap-admin", func(tx *store.Tx) error {
			n, err := tx.UserCount(ctx)
			if err != nil || n > 0 {
				return err
			}
			key := password
			if key == "" {
				if key, err = auth.GenerateMasterKey(); err != nil {
					return err
				}
				generated = key
			}
			hash, err := auth.HashKey(key)
			if err != nil {
				return err
			}
			u, err := tx.UserCreate(ctx, username, string(auth.RoleSuperAdmin), hash, nil)
			if err != nil {
				return err
			}
			created = true
			return tx.Audit(ctx, testum.AuditEntry{Actor: "testum", Action: "user.create", Target: u.Username,
				Details: map[string]any{"role": u.Role, "bootstrap": true}, Outcome: "ok"})
		})
		if err != nil || ran {
			if err != nil {
				generated = ""
			}
			return created, generated, err
		}
		select { // another process holds the job: let it finish
		case <-ctx.Done():
			return false, "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false, "", testum.Errorf(testum.CodeUnavailable, "could not bootstrap the first user")
}
