package gateway

import (
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/testum/testum/libs/api"
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
	f := store.PlatformFilter{Name: c.Query("name"), State: c.Query("state")}
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
	out := make([]api.Platform, len(ps))
	for i, p := range ps {
		out[i] = platformJSON(p)
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
	var req api.PlatformRequest
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
	return c.JSON(platformJSON(p))
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

// HostKeyInfo shows what is pinned and what the host now offers.
type HostKeyInfo struct {
	Policy             string     `json:"policy"`
	Pinned             string     `json:"pinned,omitempty"`
	PinnedFingerprint  string     `json:"pinned_fingerprint,omitempty"`
	Offered            string     `json:"offered,omitempty"`
	OfferedFingerprint string     `json:"offered_fingerprint,omitempty"`
	OfferedAt          *time.Time `json:"offered_at,omitempty"`
}

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
	return c.JSON(HostKeyInfo{Policy: policy, Pinned: hk.Pinned, PinnedFingerprint: hk.PinnedFingerprint,
		Offered: hk.Offered, OfferedFingerprint: hk.OfferedFingerprint, OfferedAt: hk.OfferedAt})
}

// hostKeyAccept pins the key the host offered. The request names the
// fingerprint the administrator checked, so a key that changed again in
// between is not accepted blindly.
func (g *Gateway) hostKeyAccept(c *fiber.Ctx) error {
	id, err := paramID(c, "id")
	if err != nil {
		return err
	}
	var req struct {
		Fingerprint string `json:"fingerprint"`
	}
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
	return c.JSON(res)
}

// CredentialRequest stores a reusable credential.
type CredentialRequest struct {
	Name       string  `json:"name"`
	Kind       string  `json:"kind"` // password or private_key (auth_method accepted too)
	AuthMethod string  `json:"auth_method"`
	Password   *string `json:"password"`
	PrivateKey *string `json:"private_key"`
	Passphrase *string `json:"passphrase"`
}

func credentialJSON(cr testum.Credential) fiber.Map {
	return fiber.Map{"id": cr.ID, "name": cr.Name, "kind": cr.Kind, "has_passphrase": cr.HasPassphrase,
		"public_key": cr.PublicKey, "fingerprint": cr.Fingerprint, "key_id": cr.KeyID, "created_at": cr.CreatedAt}
}

func (g *Gateway) credentialCreate(c *fiber.Ctx) error {
	var req CredentialRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	kind := req.Kind
	if kind == "" {
		kind = req.AuthMethod
	}
	cr, err := g.platforms.CreateCredential(c.UserContext(), g.actor(c), req.Name,
		platforms.Secret{AuthMethod: kind, Password: req.Password, PrivateKey: req.PrivateKey, Passphrase: req.Passphrase})
	if err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(credentialJSON(cr))
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
	out := make([]fiber.Map, len(list))
	for i, cr := range list {
		out[i] = credentialJSON(cr)
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
