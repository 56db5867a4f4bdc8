package gateway

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/api"
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
	if err := validName("key", req.Name); err != nil {
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

// identity returns testum's own key pair's credential, creating it once.
func (g *Gateway) identity(c *fiber.Ctx) (testum.Credential, error) {
	ctx := c.UserContext()
	cr, err := g.st.CredentialByName(ctx, IdentityCredential)
	if err == nil || !store.IsNotFound(err) {
		return cr, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return cr, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "testum")
	if err != nil {
		return cr, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return cr, err
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " testum"
	err = g.st.InTx(ctx, func(tx *store.Tx) error {
		if cr, err = tx.CredentialCreate(ctx, store.NewSecret{Name: IdentityCredential, Kind: testum.AuthPrivateKey,
			Secret: pem.EncodeToMemory(block), PublicKey: pub, Fingerprint: sshx.Fingerprint(signer.PublicKey())}); err != nil {
			return err
		}
		return g.audit(ctx, c, tx, "credential.create", "credential:"+IdentityCredential, map[string]any{"fingerprint": cr.Fingerprint})
	})
	if testum.CodeOf(err) == testum.CodeConflict { // another gateway made it first
		return g.st.CredentialByName(ctx, IdentityCredential)
	}
	return cr, err
}

func (g *Gateway) identityGet(c *fiber.Ctx) error {
	cr, err := g.identity(c)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"credential_id": cr.ID, "public_key": cr.PublicKey, "fingerprint": cr.Fingerprint})
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
		cr, err := g.identity(c)
		if err != nil {
			return err
		}
		lines = append(lines, cr.PublicKey)
	}
	if len(lines) == 0 {
		return testum.Invalid("no keys: give key_ids and/or identity: true")
	}
	run, err := g.createRun(c, api.RunRequest{Command: authorizedKeysScript(lines, revoke), Timeout: req.Timeout,
		Targets: req.Targets}, nil)
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
