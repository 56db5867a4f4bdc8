package executor

import (
	"bytes"
	"context"
	"fmt"
	"sort"

	"github.com/testum/testum/libs/remote"
	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/testum"
)

// Mask replaces every secret testum supplied to a host in its output.
const Mask = "********"

// MinMaskLen is the shortest secret masked in output. Masking is a second
// line of defence for secrets of real length; a secret of a few bytes
// ("root", "1234") occurs in ordinary output, and masking every occurrence
// would garble the output while saying little about the secret.
const MinMaskLen = 6

// secretMask finds the secrets of one host in its output streams. Each
// stream holds back only the longest tail that may begin a secret, so a
// secret split across two writes is still masked; close flushes the tails.
type secretMask struct {
	secrets [][]byte // longest first: the longer of two overlapping secrets wins
	held    map[string][]byte
}

// newSecretMask returns nil when no secret is long enough to mask.
func newSecretMask(secrets []string) *secretMask {
	seen := map[string]bool{}
	m := &secretMask{held: map[string][]byte{}}
	for _, s := range secrets {
		if len(s) >= MinMaskLen && !seen[s] {
			seen[s] = true
			m.secrets = append(m.secrets, []byte(s))
		}
	}
	if len(m.secrets) == 0 {
		return nil
	}
	sort.Slice(m.secrets, func(i, j int) bool { return len(m.secrets[i]) > len(m.secrets[j]) })
	return m
}

// write masks p, a chunk of the stream, and returns what may be passed on.
func (m *secretMask) write(stream string, p []byte) []byte {
	held := m.held[stream]
	buf := make([]byte, 0, len(held)+len(p))
	buf = append(append(buf, held...), p...)
	out := m.replace(buf[:0:0], &buf)
	keep := 0
	for _, s := range m.secrets {
		keep = max(keep, remote.PartialTail(buf, s))
	}
	out = append(out, buf[:len(buf)-keep]...)
	if keep > 0 {
		m.held[stream] = append([]byte(nil), buf[len(buf)-keep:]...)
	} else {
		delete(m.held, stream)
	}
	return out
}

// replace appends to out the part of *buf up to the end of its last
// secret, masked, and leaves the rest in *buf.
func (m *secretMask) replace(out []byte, buf *[]byte) []byte {
	b := *buf
	for {
		at, n := -1, 0
		for _, s := range m.secrets {
			if i := bytes.Index(b, s); i >= 0 && (at < 0 || i < at) {
				at, n = i, len(s)
			}
		}
		if at < 0 {
			*buf = b
			return out
		}
		out = append(append(out, b[:at]...), Mask...)
		b = b[at+n:]
	}
}

// flush returns the held tail of stream: no secret follows any more.
func (m *secretMask) flush(stream string) []byte {
	b := m.held[stream]
	delete(m.held, stream)
	return b
}

// text masks a complete text (an error message).
func (m *secretMask) text(s string) string {
	if m == nil {
		return s
	}
	b := []byte(s)
	out := m.replace(nil, &b)
	return string(append(out, b...))
}

// targetSecrets lists what testum gives a host and its jump hosts to log
// in: passwords and key passphrases.
func targetSecrets(t sshx.Target) []string {
	var out []string
	for hop, i := &t, 0; hop != nil && i <= 16; hop, i = hop.Jump, i+1 {
		out = append(out, hop.Password, string(hop.Passphrase))
	}
	return out
}

// spec is the run's spec with its secret env values, read from PostgreSQL
// (they never travel on NATS) once per run on this executor, and the
// secrets to mask in the output.
func (t *hostTask) spec(ctx context.Context, target sshx.Target) (testum.RunSpec, []string, error) {
	spec := t.run.Spec
	secrets := targetSecrets(target)
	if len(spec.SecretEnvNames) == 0 {
		return spec, secrets, nil
	}
	env, err := t.e.secretEnvs.get(ctx, t.run.ID, func(ctx context.Context) (map[string]string, error) {
		return t.e.st.RunSecretEnv(ctx, t.run.ID)
	})
	if err != nil {
		return spec, secrets, fmt.Errorf("reading the run's secret env: %w", err)
	}
	spec.SecretEnv = env
	for _, v := range env {
		secrets = append(secrets, v)
	}
	return spec, secrets, nil
}
