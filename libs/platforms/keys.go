package platforms

import (
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/sshx"
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
