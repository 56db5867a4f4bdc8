package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
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

// parsePublicKey accepts one authorized_keys line (options are refused:
// testum deploys plain keys) and returns it normalized with its fingerprint.
func parsePublicKey(s string) (line, fingerprint string, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", "", testum.Invalid("public_key is required")
	}
	if strings.ContainsAny(s, "\n\r") {
		return "", "", testum.Invalid("public_key must be one line")
	}
	pub, comment, opts, rest, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return "", "", testum.Invalid("public_key is not an OpenSSH public key (like \"ssh-ed25519 AAAA… comment\")")
	}
	if len(opts) > 0 || len(strings.TrimSpace(string(rest))) > 0 {
		return "", "", testum.Invalid("public_key must be a single key without options")
	}
	line = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if comment = strings.TrimSpace(comment); comment != "" {
		line += " " + comment
	}
	return line, sshx.Fingerprint(pub), nil
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
	line, fp, err := parsePublicKey(req.PublicKey)
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
	run, err := g.runs.Create(c.UserContext(), g.actor(c), runs.Request{Command: authorizedKeysScript(lines, revoke),
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

// authorizedKeysScript is a POSIX sh program that adds (or removes) keys in
// the login user's ~/.ssh/authorized_keys atomically: the new file is
// written next to the old one and renamed over it, so an interrupted deploy
// leaves the old file whole. Existing lines and comments are kept, a key
// already present (matched by its base64 blob, options or not) is not added
// again, ~/.ssh is created 0700 and a new file 0600; an existing file keeps
// its mode. Keys are plain ASCII lines, safe in a quoted here-document.
func authorizedKeysScript(lines []string, revoke bool) string {
	mode := "add"
	if revoke {
		mode = "remove"
	}
	return fmt.Sprintf(`set -eu
umask 077
mode=%s
d="$HOME/.ssh"; f="$d/authorized_keys"
[ -d "$d" ] || mkdir -m 700 "$d"
t=$(mktemp "$d/.authorized_keys.testum.XXXXXX")
trap 'rm -f "$t"' EXIT
if [ -f "$f" ]; then cat "$f" > "$t"; chmod "$(stat -c %%a "$f")" "$t"; else chmod 600 "$t"; fi
[ -s "$t" ] && [ -n "$(tail -c 1 "$t")" ] && echo >> "$t"
has() { awk -v b="$1" '{ for (i = 1; i <= NF; i++) if ($i == b) f = 1 } END { exit !f }' "$t"; }
added=0; present=0; removed=0
while read -r ktype blob rest; do
	[ -n "$blob" ] || continue
	if [ "$mode" = add ]; then
		if has "$blob"; then present=$((present + 1)); else printf '%%s %%s%%s\n' "$ktype" "$blob" "${rest:+ $rest}" >> "$t"; added=$((added + 1)); fi
	elif has "$blob"; then
		awk -v b="$blob" '{ k = 1; for (i = 1; i <= NF; i++) if ($i == b) k = 0 } k' "$t" > "$t.n" && cat "$t.n" > "$t" && rm -f "$t.n"
		removed=$((removed + 1))
	fi
done <<'TESTUM_KEYS'
%s
TESTUM_KEYS
mv -f "$t" "$f"
trap - EXIT
if [ "$mode" = add ]; then echo "authorized_keys: $added added, $present already present"; else echo "authorized_keys: $removed removed"; fi
`, mode, strings.Join(lines, "\n"))
}
