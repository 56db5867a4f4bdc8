package gateway

import (
	"net/http"

	"github.com/gofiber/fiber/v2"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/platforms"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// platformSearch lists platforms, filtered by ?label=role=web,env=prod (or
// labels=), ?name= (substring) and ?state=.
func (g *Gateway) platformSearch(c *fiber.Ctx) error {
	limit, offset, err := page(c)
	if err != nil {
		return err
	}
	f := store.PlatformFilter{Name: c.Query("name"), State: testum.PlatformState(c.Query("state"))}
	sel := c.Query("label", c.Query("labels"))
	if sel != "" {
		if f.Labels, err = testum.ParseLabelList(sel); err != nil {
			return err
		}
	}
	ps, total, err := g.st.PlatformSearch(c.UserContext(), f, limit, offset)
	if err != nil {
		return err
	}
	out := make([]apiclient.Platform, len(ps))
	for i, p := range ps {
		out[i] = platformWire(p)
	}
	return sendPage(c, out, total, limit, offset)
}

// platformUpdate replaces a platform's settings. The secret may be left
// out to keep the current one.
func (g *Gateway) platformUpdate(c *fiber.Ctx) error {
	id, err := paramID(c, "id")
	if err != nil {
		return err
	}
	var req apiclient.PlatformRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	pr, err := platformRequest(req)
	if err != nil {
		return err
	}
	p, err := g.platforms.Update(c.UserContext(), g.actor(c), id, pr)
	if err != nil {
		return err
	}
	return c.JSON(platformWire(p))
}

func (g *Gateway) platformDelete(c *fiber.Ctx) error {
	id, err := paramID(c, "id")
	if err != nil {
		return err
	}
	if err := g.platforms.Delete(c.UserContext(), g.actor(c), id); err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}

// hostKeyGet shows what is pinned and what the host now offers.
func (g *Gateway) hostKeyGet(c *fiber.Ctx) error {
	id, err := paramID(c, "id")
	if err != nil {
		return err
	}
	p, err := g.st.Platform(c.UserContext(), id)
	if err != nil {
		return err
	}
	hk, err := g.st.PlatformHostKeys(c.UserContext(), id)
	if err != nil {
		return err
	}
	policy := string(p.HostKeyPolicy)
	if policy == "" {
		policy = string(g.cfg.HostKeyPolicy) + " (global)"
	}
	return c.JSON(hostKeyInfoWire(policy, hk))
}

// hostKeyAccept pins the key the host offered. The request names the
// fingerprint the administrator checked, so a key that changed again in
// between is not accepted blindly.
func (g *Gateway) hostKeyAccept(c *fiber.Ctx) error {
	id, err := paramID(c, "id")
	if err != nil {
		return err
	}
	var req apiclient.HostKeyAcceptRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	if err := g.platforms.AcceptHostKey(c.UserContext(), g.actor(c), id, req.Fingerprint); err != nil {
		return err
	}
	return g.hostKeyGet(c)
}

// platformTest dials the platform (through its jump chain), checks the host
// key and logs in, within the connect timeout, and says what failed.
func (g *Gateway) platformTest(c *fiber.Ctx) error {
	id, err := paramID(c, "id")
	if err != nil {
		return err
	}
	res, err := g.platforms.Test(c.UserContext(), g.actor(c), id)
	if err != nil {
		return err
	}
	return c.JSON(testResultWire(res))
}

// credentialCreate stores a reusable credential; its kind (password or
// private_key) may be given as auth_method too.
func (g *Gateway) credentialCreate(c *fiber.Ctx) error {
	var req apiclient.CredentialRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	kind := deref(req.Kind)
	if kind == "" {
		kind = deref(req.AuthMethod)
	}
	cr, err := g.platforms.CreateCredential(c.UserContext(), g.actor(c), req.Name,
		platforms.Secret{AuthMethod: kind, Password: req.Password, PrivateKey: req.PrivateKey, Passphrase: req.Passphrase})
	if err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(credentialWire(cr))
}

func (g *Gateway) credentialList(c *fiber.Ctx) error {
	limit, offset, err := page(c)
	if err != nil {
		return err
	}
	list, total, err := g.st.CredentialList(c.UserContext(), limit, offset)
	if err != nil {
		return err
	}
	out := make([]apiclient.Credential, len(list))
	for i, cr := range list {
		out[i] = credentialWire(cr)
	}
	return sendPage(c, out, total, limit, offset)
}

func (g *Gateway) credentialDelete(c *fiber.Ctx) error {
	id, err := paramID(c, "id")
	if err != nil {
		return err
	}
	if err := g.platforms.DeleteCredential(c.UserContext(), g.actor(c), id); err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}
