package platforms

import (
	"context"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// ParsePublicKey accepts one authorized_keys line (options are refused:
// testum deploys plain keys) and returns it normalized with its fingerprint.
func ParsePublicKey(s string) (line, fingerprint string, err error) {
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

// AuthorizedKeysScript is a POSIX sh program that adds (or removes) keys in
// the login user's ~/.ssh/authorized_keys atomically: the new file is
// written next to the old one and renamed over it, so an interrupted deploy
// leaves the old file whole. Existing lines and comments are kept, a key
// already present (matched by its base64 blob, options or not) is not added
// again, ~/.ssh is created 0700 and a new file 0600; an existing file keeps
// its mode. Keys are plain ASCII lines, safe in a quoted here-document.
func AuthorizedKeysScript(lines []string, revoke bool) string {
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

// CreateKey stores a public key to deploy, under a name.
func (s *Service) CreateKey(ctx context.Context, by auth.Actor, name, publicKey string) (store.SSHKey, error) {
	name = strings.TrimSpace(name)
	if err := ValidName("key", name); err != nil {
		return store.SSHKey{}, err
	}
	line, fp, err := ParsePublicKey(publicKey)
	if err != nil {
		return store.SSHKey{}, err
	}
	var k store.SSHKey
	err = s.st.InTx(ctx, func(tx Tx) error {
		if k, err = tx.SSHKeyCreate(ctx, name, line, fp, by.Username); err != nil {
			return err
		}
		return tx.Audit(ctx, by.Entry("key.create", "key:"+k.Name, map[string]any{"fingerprint": fp}))
	})
	return k, err
}

// DeleteKey deletes public key id (from testum, not from the hosts).
func (s *Service) DeleteKey(ctx context.Context, by auth.Actor, id int64) error {
	return s.st.InTx(ctx, func(tx Tx) error {
		k, err := tx.SSHKeyDelete(ctx, id)
		if err != nil {
			return err
		}
		return tx.Audit(ctx, by.Entry("key.delete", "key:"+k.Name, map[string]any{"fingerprint": k.Fingerprint}))
	})
}

// KeysScript is the script that deploys (or, with revoke, removes) the
// stored keys keyIDs and, with identity, testum's own public key, as the
// command of a run on the hosts.
func (s *Service) KeysScript(ctx context.Context, by auth.Actor, keyIDs []int64, identity, revoke bool) (string, error) {
	var lines []string
	if len(keyIDs) > 0 {
		keys, err := s.st.SSHKeysByIDs(ctx, keyIDs)
		if err != nil {
			return "", err
		}
		distinct := map[int64]bool{}
		for _, id := range keyIDs {
			distinct[id] = true
		}
		if len(keys) != len(distinct) {
			return "", testum.Invalid("unknown key id in %v", keyIDs)
		}
		for _, k := range keys {
			lines = append(lines, k.PublicKey)
		}
	}
	if identity {
		cr, _, err := s.Identity(ctx, by)
		if err != nil {
			return "", err
		}
		lines = append(lines, cr.PublicKey)
	}
	if len(lines) == 0 {
		return "", testum.Invalid("no keys: give key_ids and/or identity: true")
	}
	return AuthorizedKeysScript(lines, revoke), nil
}
