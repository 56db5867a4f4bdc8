package gateway

import (
	"context"
	"strings"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/api"
	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

func (g *Gateway) platformList(c *fiber.Ctx) error {
	limit, offset, err := page(c)
	if err != nil {
		return err
	}
	ps, total, err := g.st.PlatformList(c.UserContext(), limit, offset)
	if err != nil {
		return err
	}
	out := make([]api.Platform, len(ps))
	for i, p := range ps {
		out[i] = platformJSON(p)
	}
	return sendPage(c, out, total, limit, offset)
}

func (g *Gateway) platformGet(c *fiber.Ctx) error {
	id, err := paramID(c, "id")
	if err != nil {
		return err
	}
	p, err := g.st.Platform(c.UserContext(), id)
	if err != nil {
		return err
	}
	return c.JSON(platformJSON(p))
}

func (g *Gateway) platformCreate(c *fiber.Ctx) error {
	var req api.PlatformRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	np, err := newPlatform(req)
	if err != nil {
		return err
	}
	if err := g.checkTarget(np.Host); err != nil {
		return err
	}
	ctx := c.UserContext()
	var p testum.Platform
	err = g.st.InTx(ctx, func(tx *store.Tx) error {
		if err := checkRefs(ctx, tx, np); err != nil {
			return err
		}
		var err error
		if p, err = tx.PlatformCreate(ctx, np); err != nil {
			return err
		}
		return g.audit(ctx, c, tx, "platform.create", platformTarget(p), map[string]any{
			"host": p.Host, "port": p.Port, "username": p.Username, "auth_method": p.AuthMethod, "labels": p.Labels,
		})
	})
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(platformJSON(p))
}

// checkRefs verifies that referenced credential and jump host exist and
// fit, with a clear error rather than a foreign-key failure.
func checkRefs(ctx context.Context, tx *store.Tx, np store.NewPlatform) error {
	if np.CredentialID != nil {
		cr, err := tx.Credential(ctx, *np.CredentialID)
		if err != nil {
			if store.IsNotFound(err) {
				return testum.Invalid("credential_id %d does not exist", *np.CredentialID)
			}
			return err
		}
		if cr.Kind != np.AuthMethod {
			return testum.Invalid("credential %d holds a %s, but auth_method is %s", cr.ID, cr.Kind, np.AuthMethod)
		}
	}
	if np.JumpPlatformID != nil {
		ps, err := tx.PlatformsByIDs(ctx, []int64{*np.JumpPlatformID})
		if err != nil {
			return err
		}
		if len(ps) == 0 {
			return testum.Invalid("jump_platform_id %d does not exist", *np.JumpPlatformID)
		}
	}
	return nil
}

// newPlatform validates a platform request and turns it into what the store
// creates. The secret is checked here (a key must parse, with its
// passphrase) so a platform that cannot log in is refused at once.
func newPlatform(req api.PlatformRequest) (store.NewPlatform, error) {
	np := store.NewPlatform{
		Name: strings.TrimSpace(req.Name), Host: strings.TrimSpace(req.Host), Port: 22,
		Username: strings.TrimSpace(req.Username), JumpPlatformID: req.JumpPlatformID,
		HostKeyPolicy: testum.HostKeyPolicy(strings.ToLower(strings.TrimSpace(req.HostKeyPolicy))),
	}
	if req.Port != nil {
		np.Port = *req.Port
	}
	if err := validName("platform", np.Name); err != nil {
		return np, err
	}
	if err := validHost(np.Host); err != nil {
		return np, err
	}
	if err := validPort(np.Port); err != nil {
		return np, err
	}
	if err := validUser(np.Username); err != nil {
		return np, err
	}
	if np.HostKeyPolicy != "" && !np.HostKeyPolicy.Valid() {
		return np, testum.Invalid("host_key_policy %q: want auto_add or strict (or leave it out for the global policy)", req.HostKeyPolicy)
	}
	labels, err := parseLabels(req.Labels)
	if err != nil {
		return np, err
	}
	np.Labels = labels

	method := testum.AuthMethod(strings.ToLower(strings.TrimSpace(req.AuthMethod)))
	if method == "" { // infer from what was given
		switch {
		case req.PrivateKey != nil:
			method = testum.AuthPrivateKey
		case req.Password != nil:
			method = testum.AuthPassword
		}
	}
	np.AuthMethod = method
	given := 0
	for _, set := range []bool{req.Password != nil, req.PrivateKey != nil, req.CredentialID != nil} {
		if set {
			given++
		}
	}
	if given > 1 {
		return np, testum.Invalid("give only one of password, private_key and credential_id")
	}
	if req.CredentialID != nil {
		if method != testum.AuthPassword && method != testum.AuthPrivateKey {
			return np, testum.Invalid("auth_method %q: want password or private_key", req.AuthMethod)
		}
		np.CredentialID = req.CredentialID
		return np, nil
	}
	switch method {
	case testum.AuthPassword:
		if req.Password == nil || *req.Password == "" {
			return np, testum.Invalid("auth_method password needs a non-empty password (or a credential_id)")
		}
		np.Secret = &store.NewSecret{Kind: method, Secret: []byte(*req.Password)}
	case testum.AuthPrivateKey:
		if req.PrivateKey == nil || strings.TrimSpace(*req.PrivateKey) == "" {
			return np, testum.Invalid("auth_method private_key needs a private_key (or a credential_id)")
		}
		var pass []byte
		if req.Passphrase != nil {
			pass = []byte(*req.Passphrase)
		}
		signer, err := sshx.ParsePrivateKey([]byte(*req.PrivateKey), pass)
		if err != nil {
			return np, testum.Invalid("private_key: %v", err)
		}
		np.Secret = &store.NewSecret{
			Kind: method, Secret: []byte(*req.PrivateKey), Passphrase: pass,
			PublicKey:   strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))),
			Fingerprint: sshx.Fingerprint(signer.PublicKey()),
		}
	case "":
		return np, testum.Invalid("auth_method is required: password or private_key")
	default:
		return np, testum.Invalid("auth_method %q: want password or private_key", req.AuthMethod)
	}
	return np, nil
}

func platformTarget(p testum.Platform) string { return "platform:" + p.Name }

func platformJSON(p testum.Platform) api.Platform {
	return api.Platform{
		ID: p.ID, Name: p.Name, Host: p.Host, Port: p.Port, Username: p.Username,
		AuthMethod: string(p.AuthMethod), CredentialID: p.CredentialID, Labels: p.Labels,
		JumpPlatformID: p.JumpPlatformID, HostKeyPolicy: string(p.HostKeyPolicy),
		HostKeyFingerprint: p.HostKeyFingerprint, OfferedFingerprint: p.OfferedFingerprint,
		State: p.State, StateDetail: p.StateDetail, LastContactAt: p.LastContactAt,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
	}
}
