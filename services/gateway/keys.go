package gateway

import (
	"context"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/testum/testum/libs/api"
	"github.com/testum/testum/libs/platforms"
	"github.com/testum/testum/libs/runs"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// IdentityCredential names testum's own key pair.
const IdentityCredential = platforms.IdentityCredential

// KeyRequest adds a public key.
type KeyRequest struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
}

func (g *Gateway) keyCreate(c *fiber.Ctx) error {
	var req KeyRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	k, err := g.platforms.CreateKey(c.UserContext(), g.actor(c), req.Name, req.PublicKey)
	if err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(k)
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
	return sendPage(c, list, total, limit, offset)
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

func identityJSON(cr testum.Credential) fiber.Map {
	return fiber.Map{"credential_id": cr.ID, "public_key": cr.PublicKey, "fingerprint": cr.Fingerprint}
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
	return c.JSON(identityJSON(cr))
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
	return c.Status(status).JSON(identityJSON(cr))
}

// DeployRequest names the keys to add or remove.
type DeployRequest struct {
	KeyIDs   []int64     `json:"key_ids"`
	Identity bool        `json:"identity"` // testum's own key too
	Targets  api.Targets `json:"targets"`  // for /api/keys/deploy and /revoke
	Timeout  *int        `json:"timeout,omitempty"`
}

func (g *Gateway) deployKeys(c *fiber.Ctx) error     { return g.keysRun(c, false, true) }
func (g *Gateway) revokeKeys(c *fiber.Ctx) error     { return g.keysRun(c, true, true) }
func (g *Gateway) deployKeysMany(c *fiber.Ctx) error { return g.keysRun(c, false, false) }
func (g *Gateway) revokeKeysMany(c *fiber.Ctx) error { return g.keysRun(c, true, false) }

// keysRun deploys or revokes keys as a normal run, so it streams, records
// each host's outcome and is audited like any other.
func (g *Gateway) keysRun(c *fiber.Ctx, revoke, onePlatform bool) error {
	var req DeployRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	if onePlatform {
		id, err := paramID(c, "id")
		if err != nil {
			return err
		}
		if _, err := g.st.Platform(c.UserContext(), id); err != nil {
			return err
		}
		req.Targets = api.Targets{PlatformIDs: []int64{id}}
	}
	script, err := g.platforms.KeysScript(c.UserContext(), g.actor(c), req.KeyIDs, req.Identity, revoke)
	if err != nil {
		return err
	}
	run, err := g.runs.Create(c.UserContext(), g.actor(c), runs.Request{Command: script,
		Timeout: req.Timeout, Targets: runTargets(req.Targets)})
	if err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(fiber.Map{"task_id": run.ID.String(), "id": run.ID.String(), "hosts": run.HostCount})
}
