package gateway

import (
	"context"
	"net/http"

	"github.com/gofiber/fiber/v2"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/platforms"
	"github.com/testum/testum/libs/runs"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// IdentityCredential names testum's own key pair.
const IdentityCredential = platforms.IdentityCredential

func (g *Gateway) keyCreate(c *fiber.Ctx) error {
	var req apiclient.KeyRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	k, err := g.platforms.CreateKey(c.UserContext(), g.actor(c), req.Name, req.PublicKey)
	if err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(sshKeyWire(k))
}

func (g *Gateway) keyList(c *fiber.Ctx) error {
	limit, offset, err := page(c)
	if err != nil {
		return err
	}
	list, total, err := g.st.SSHKeyList(c.UserContext(), limit, offset)
	if err != nil {
		return err
	}
	out := make([]apiclient.SSHKey, len(list))
	for i, k := range list {
		out[i] = sshKeyWire(k)
	}
	return sendPage(c, out, total, limit, offset)
}

func (g *Gateway) keyDelete(c *fiber.Ctx) error {
	id, err := paramID(c, "id")
	if err != nil {
		return err
	}
	if err := g.platforms.DeleteKey(c.UserContext(), g.actor(c), id); err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}

// EnsureIdentity creates testum's own key pair at start when there is none,
// so that no request (a GET least of all) has to; it reports whether it did.
func EnsureIdentity(ctx context.Context, st *store.Store) (bool, error) {
	svc, err := platforms.New(platforms.Config{}, platforms.Postgres(st))
	if err != nil {
		return false, err
	}
	return svc.EnsureIdentity(ctx)
}

// identityGet shows testum's public key; it creates nothing (a GET changes
// no state): the key pair is made at start, or by POST.
func (g *Gateway) identityGet(c *fiber.Ctx) error {
	cr, err := g.st.CredentialByName(c.UserContext(), IdentityCredential)
	if store.IsNotFound(err) {
		return &testum.Error{Code: testum.CodeNotFound, Reason: "no_identity",
			Message: "testum has no identity key pair yet: POST /api/keys/identity creates it"}
	}
	if err != nil {
		return err
	}
	return c.JSON(identityWire(cr))
}

// identityCreate makes testum's key pair if it has none (201), else shows
// the existing one (200): calling it twice is harmless.
func (g *Gateway) identityCreate(c *fiber.Ctx) error {
	cr, created, err := g.platforms.Identity(c.UserContext(), g.actor(c))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return c.Status(status).JSON(identityWire(cr))
}

func (g *Gateway) deployKeys(c *fiber.Ctx) error     { return g.keysRun(c, false, true) }
func (g *Gateway) revokeKeys(c *fiber.Ctx) error     { return g.keysRun(c, true, true) }
func (g *Gateway) deployKeysMany(c *fiber.Ctx) error { return g.keysRun(c, false, false) }
func (g *Gateway) revokeKeysMany(c *fiber.Ctx) error { return g.keysRun(c, true, false) }

// keysRun deploys or revokes keys as a normal run, so it streams, records
// each host's outcome and is audited like any other. The targets are the
// request's on /api/keys/deploy and /revoke, the path's platform otherwise.
func (g *Gateway) keysRun(c *fiber.Ctx, revoke, onePlatform bool) error {
	var req apiclient.DeployRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	targets := runTargets(deref(req.Targets))
	if onePlatform {
		id, err := paramID(c, "id")
		if err != nil {
			return err
		}
		if _, err := g.st.Platform(c.UserContext(), id); err != nil {
			return err
		}
		targets = runs.Targets{PlatformIDs: []int64{id}}
	}
	script, err := g.platforms.KeysScript(c.UserContext(), g.actor(c), deref(req.KeyIds), deref(req.Identity), revoke)
	if err != nil {
		return err
	}
	run, err := g.runs.Create(c.UserContext(), g.actor(c), runs.Request{Command: script,
		Timeout: req.Timeout, Targets: targets})
	if err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(apiclient.KeysRun{TaskId: run.ID, Id: run.ID, Hosts: run.HostCount})
}
