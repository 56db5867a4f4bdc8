package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/api"
	"github.com/testum/testum/libs/platforms"
	"github.com/testum/testum/libs/runs"
	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// IdentityCredential names testum's own key pair, generated once per
// installation: its public half deploys like any key, so a fleet moves
// from passwords to keys by deploying it and pointing platforms at it.
const IdentityCredential = "testum-identity"

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
	req.Name = strings.TrimSpace(req.Name)
	if err := platforms.ValidName("key", req.Name); err != nil {
		return err
	}
	line, fp, err := platforms.ParsePublicKey(req.PublicKey)
	if err != nil {
		return err
	}
	ctx := c.UserContext()
	var k store.SSHKey
	err = g.st.InTx(ctx, func(tx *store.Tx) error {
		if k, err = tx.SSHKeyCreate(ctx, req.Name, line, fp, principal(c).Username); err != nil {
			return err
		}
		return g.audit(ctx, c, tx, "key.create", "key:"+k.Name, map[string]any{"fingerprint": fp})
	})
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
	ctx := c.UserContext()
	err = g.st.InTx(ctx, func(tx *store.Tx) error {
		k, err := tx.SSHKeyDelete(ctx, id)
		if err != nil {
			return err
		}
		return g.audit(ctx, c, tx, "key.delete", "key:"+k.Name, map[string]any{"fingerprint": k.Fingerprint})
	})
	if err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}

// newIdentity generates testum's own key pair, ready to store.
func newIdentity() (store.NewSecret, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return store.NewSecret{}, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "testum")
	if err != nil {
		return store.NewSecret{}, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return store.NewSecret{}, err
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " testum"
	return store.NewSecret{Name: IdentityCredential, Kind: testum.AuthPrivateKey, Secret: pem.EncodeToMemory(block),
		PublicKey: pub, Fingerprint: sshx.Fingerprint(signer.PublicKey())}, nil
}

// ensureIdentity returns testum's key pair, creating it when there is none;
// audit writes the creation's entry in its transaction. Concurrent callers
// (gateways starting together) end up with the same one.
func ensureIdentity(ctx context.Context, st *store.Store, audit func(tx *store.Tx, cr testum.Credential) error) (testum.Credential, bool, error) {
	cr, err := st.CredentialByName(ctx, IdentityCredential)
	if err == nil || !store.IsNotFound(err) {
		return cr, false, err
	}
	ns, err := newIdentity()
	if err != nil {
		return cr, false, err
	}
	err = st.InTx(ctx, func(tx *store.Tx) error {
		if cr, err = tx.CredentialCreate(ctx, ns); err != nil {
			return err
		}
		return audit(tx, cr)
	})
	if testum.CodeOf(err) == testum.CodeConflict { // another gateway made it first
		cr, err = st.CredentialByName(ctx, IdentityCredential)
		return cr, false, err
	}
	return cr, err == nil, err
}

// EnsureIdentity creates testum's own key pair at start when there is none,
// so that no request (a GET least of all) has to; it reports whether it did.
func EnsureIdentity(ctx context.Context, st *store.Store) (bool, error) {
	_, created, err := ensureIdentity(ctx, st, func(tx *store.Tx, cr testum.Credential) error {
		return tx.Audit(ctx, testum.AuditEntry{Actor: "testum", Action: "credential.create", Target: "credential:" + IdentityCredential,
			Details: map[string]any{"fingerprint": cr.Fingerprint, "bootstrap": true}, Outcome: "ok"})
	})
	return created, err
}

// identity returns testum's key pair for a state-changing request, creating
// it (audited as the caller) when it is missing.
func (g *Gateway) identity(c *fiber.Ctx) (testum.Credential, bool, error) {
	ctx := c.UserContext()
	return ensureIdentity(ctx, g.st, func(tx *store.Tx, cr testum.Credential) error {
		return g.audit(ctx, c, tx, "credential.create", "credential:"+IdentityCredential, map[string]any{"fingerprint": cr.Fingerprint})
	})
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
	cr, created, err := g.identity(c)
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
	var lines []string
	if len(req.KeyIDs) > 0 {
		keys, err := g.st.SSHKeysByIDs(c.UserContext(), req.KeyIDs)
		if err != nil {
			return err
		}
		if len(keys) != len(uniq(req.KeyIDs)) {
			return testum.Invalid("unknown key id in %v", req.KeyIDs)
		}
		for _, k := range keys {
			lines = append(lines, k.PublicKey)
		}
	}
	if req.Identity {
		cr, _, err := g.identity(c)
		if err != nil {
			return err
		}
		lines = append(lines, cr.PublicKey)
	}
	if len(lines) == 0 {
		return testum.Invalid("no keys: give key_ids and/or identity: true")
	}
	run, err := g.runs.Create(c.UserContext(), g.actor(c), runs.Request{Command: platforms.AuthorizedKeysScript(lines, revoke),
		Timeout: req.Timeout, Targets: runTargets(req.Targets)})
	if err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(fiber.Map{"task_id": run.ID.String(), "id": run.ID.String(), "hosts": run.HostCount})
}

func uniq(ids []int64) map[int64]bool {
	m := map[int64]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}
