package executor

import (
	"strings"
	"testing"

	"github.com/testum/testum/libs/sshx"
)

// masked feeds chunks through one stream of a mask and flushes it.
func masked(m *secretMask, chunks ...string) string {
	var out []byte
	for _, c := range chunks {
		out = append(out, m.write("stdout", []byte(c))...)
	}
	return string(append(out, m.flush("stdout")...))
}

func TestSecretMaskSplitAnywhere(t *testing.T) {
	const secret = "hunter22-s3cret"
	text := "pw=" + secret + "; again " + secret + "\n"
	want := "pw=" + Mask + "; again " + Mask + "\n"
	for i := 0; i <= len(text); i++ {
		for j := i; j <= len(text); j++ {
			m := newSecretMask([]string{secret})
			if got := masked(m, text[:i], text[i:j], text[j:]); got != want {
				t.Fatalf("split at %d,%d: %q", i, j, got)
			}
		}
	}
}

func TestSecretMaskCases(t *testing.T) {
	for _, tc := range []struct {
		name    string
		secrets []string
		chunks  []string
		want    string
	}{
		{"no secret", nil, []string{"plain"}, "plain"},
		{"shorter than the minimum is not masked", []string{"12345"}, []string{"a 12345 b"}, "a 12345 b"},
		{"the minimum length is masked", []string{"123456"}, []string{"a 123", "456 b"}, "a " + Mask + " b"},
		{"a held prefix that is no secret is flushed", []string{"abcdefgh"}, []string{"x abcdef"}, "x abcdef"},
		{"a prefix then the real thing", []string{"abcdefgh"}, []string{"abcab", "cdefgh!"}, "abc" + Mask + "!"},
		{"two secrets", []string{"password1", "passphrase2"}, []string{"password1 passph", "rase2"}, Mask + " " + Mask},
		{"the longer of overlapping secrets wins", []string{"secret", "secret-longer"}, []string{"secret-longer secret"}, Mask + " " + Mask},
		{"empty secrets are ignored", []string{"", "abcdefg"}, []string{"abcdefg"}, Mask},
	} {
		m := newSecretMask(tc.secrets)
		if m == nil {
			if got := strings.Join(tc.chunks, ""); got != tc.want {
				t.Errorf("%s: no mask, but %q wanted", tc.name, tc.want)
			}
			continue
		}
		if got := masked(m, tc.chunks...); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	m := newSecretMask([]string{"topsecret"})
	if got := m.text("dial: password topsecret refused"); got != "dial: password "+Mask+" refused" {
		t.Errorf("text: %q", got)
	}
	if got := (*secretMask)(nil).text("as is"); got != "as is" {
		t.Errorf("nil mask: %q", got)
	}
}

func TestTargetSecretsOfEveryHop(t *testing.T) {
	tgt := sshx.Target{Password: "target-pw", Jump: &sshx.Target{Passphrase: []byte("jump-passphrase")}}
	got := strings.Join(targetSecrets(tgt), ",")
	if !strings.Contains(got, "target-pw") || !strings.Contains(got, "jump-passphrase") {
		t.Fatalf("%q", got)
	}
}
