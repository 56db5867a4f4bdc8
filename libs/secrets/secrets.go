// Package secrets encrypts credentials at rest.
//
// New ciphertexts are sealed with AES-256-GCM under a subkey derived with
// HKDF-SHA256 from a Fernet-format key (the FERNET_KEY of the Python seed).
// The envelope is
//
//	version (1 byte) | key id (8 bytes) | nonce (12 bytes) | GCM ciphertext+tag
//
// and the version byte and key id are authenticated together with the
// caller's associated data, which binds a ciphertext to its row and column.
//
// A Keyring holds one or more keys, newest first, so keys can be rotated:
// Seal always uses the newest key, Open uses whichever key the envelope names.
// Legacy Fernet tokens, as written by the Python seed, are still accepted by
// Open (their associated data is ignored, Fernet has none).
//
// Nothing in this package ever formats key material or plaintext into an
// error or a string.
package secrets

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/fernet/fernet-go"
	"golang.org/x/crypto/hkdf"
)

const (
	// versionGCM is the first byte of an envelope written by Seal.
	versionGCM byte = 0x01

	keySize    = 32 // Fernet key length in bytes
	keyIDSize  = 8
	nonceSize  = 12
	headerSize = 1 + keyIDSize + nonceSize

	infoAEAD  = "testum/secrets/v1/aes-256-gcm"
	infoKeyID = "testum/secrets/v1/key-id"

	// LegacyFernetKeyID is the key id reported by KeyIDOf for a Fernet token
	// that no key of the ring verifies. A verifiable token is reported as
	// LegacyFernetKeyID + ":" + the hex id of the key that verifies it.
	LegacyFernetKeyID = "legacy-fernet"
)

// ErrDecrypt is returned by Open when no key of the ring can authenticate the
// ciphertext: wrong key, wrong associated data, or tampered data.
var ErrDecrypt = errors.New("secrets: cannot decrypt (wrong key or tampered data)")

// ErrFormat is returned when a ciphertext is neither a sealed envelope nor a
// Fernet token.
var ErrFormat = errors.New("secrets: unrecognised ciphertext format")

// key is one entry of a Keyring. It is never formatted.
type key struct {
	id     [keyIDSize]byte
	aead   cipher.AEAD
	fernet *fernet.Key
}

// Keyring is an ordered set of keys, newest first. The zero value is not
// usable; build one with ParseKeyring. A Keyring is safe for concurrent use.
//
// Keyring implements fmt.Formatter, fmt.Stringer, fmt.GoStringer and
// slog.LogValuer so that printing or logging it never reveals key material.
type Keyring struct {
	keys []key
}

// ParseKeyring parses a comma-separated list of Fernet keys (URL-safe base64
// of 32 bytes, as produced by Python's Fernet.generate_key), newest first.
// Blank entries around commas are not allowed; surrounding spaces are
// trimmed. Errors name the 1-based position of the bad key, never its value.
func ParseKeyring(s string) (*Keyring, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("secrets: empty keyring (FERNET_KEY is not set)")
	}
	parts := strings.Split(s, ",")
	kr := &Keyring{keys: make([]key, 0, len(parts))}
	seen := make(map[[keyIDSize]byte]int, len(parts))
	for i, p := range parts {
		pos := i + 1
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("secrets: keyring entry %d of %d is empty", pos, len(parts))
		}
		raw, err := decodeKey(p)
		if err != nil {
			return nil, fmt.Errorf("secrets: keyring entry %d of %d: %w", pos, len(parts), err)
		}
		k, err := newKey(raw)
		clear(raw)
		if err != nil {
			return nil, fmt.Errorf("secrets: keyring entry %d of %d: %w", pos, len(parts), err)
		}
		if prev, dup := seen[k.id]; dup {
			return nil, fmt.Errorf("secrets: keyring entry %d duplicates entry %d", pos, prev)
		}
		seen[k.id] = pos
		kr.keys = append(kr.keys, k)
	}
	return kr, nil
}

// decodeKey decodes a Fernet key. The error never contains the input.
func decodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.RawURLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		b, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(b) != keySize {
			n := len(b)
			clear(b)
			return nil, fmt.Errorf("key decodes to %d bytes, want %d", n, keySize)
		}
		return b, nil
	}
	return nil, errors.New("key is not valid base64 (want URL-safe base64 of 32 bytes)")
}

// newKey derives the subkeys of one Fernet key.
func newKey(raw []byte) (key, error) {
	var k key
	sub := make([]byte, 32)
	defer clear(sub)
	if _, err := io.ReadFull(hkdf.New(sha256.New, raw, nil, []byte(infoAEAD)), sub); err != nil {
		return k, fmt.Errorf("deriving encryption subkey: %w", err)
	}
	block, err := aes.NewCipher(sub)
	if err != nil {
		return k, fmt.Errorf("creating cipher: %w", err)
	}
	if k.aead, err = cipher.NewGCM(block); err != nil {
		return k, fmt.Errorf("creating GCM: %w", err)
	}
	if _, err := io.ReadFull(hkdf.New(sha256.New, raw, nil, []byte(infoKeyID)), sub); err != nil {
		return k, fmt.Errorf("deriving key id subkey: %w", err)
	}
	sum := sha256.Sum256(sub)
	copy(k.id[:], sum[:keyIDSize])
	k.fernet = new(fernet.Key)
	copy(k.fernet[:], raw)
	return k, nil
}

// GenerateKey returns a new random key in Fernet format (URL-safe base64 of
// 32 bytes, padded), suitable for FERNET_KEY.
func GenerateKey() (string, error) {
	b := make([]byte, keySize)
	defer clear(b)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("secrets: generating key: %w", err)
	}
	return base64.URLEncoding.EncodeToString(b), nil
}

// Seal encrypts plaintext with the newest key. ad is associated data (for
// example "table/column/row-id") that must be given again to Open.
func (k *Keyring) Seal(plaintext, ad []byte) ([]byte, error) {
	if k == nil || len(k.keys) == 0 {
		return nil, errors.New("secrets: seal with an empty keyring")
	}
	cur := &k.keys[0]
	out := make([]byte, headerSize, headerSize+len(plaintext)+cur.aead.Overhead())
	out[0] = versionGCM
	copy(out[1:], cur.id[:])
	nonce := out[1+keyIDSize : headerSize]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("secrets: generating nonce: %w", err)
	}
	return cur.aead.Seal(out, nonce, plaintext, aad(out[:1+keyIDSize], ad)), nil
}

// aad authenticates the envelope header along with the caller's data.
func aad(header, ad []byte) []byte {
	b := make([]byte, 0, len(header)+8+len(ad))
	b = append(b, header...)
	b = binary.BigEndian.AppendUint64(b, uint64(len(ad)))
	return append(b, ad...)
}

// Open decrypts a ciphertext written by Seal, with the key its envelope
// names, or a legacy Fernet token (tried with every key, ad ignored, no TTL).
// Any authentication failure returns ErrDecrypt.
func (k *Keyring) Open(ciphertext, ad []byte) ([]byte, error) {
	if k == nil || len(k.keys) == 0 {
		return nil, errors.New("secrets: open with an empty keyring")
	}
	if isEnvelope(ciphertext) {
		kk := k.find(ciphertext[1 : 1+keyIDSize])
		if kk == nil {
			return nil, ErrDecrypt
		}
		pt, err := kk.aead.Open(nil, ciphertext[1+keyIDSize:headerSize], ciphertext[headerSize:], aad(ciphertext[:1+keyIDSize], ad))
		if err != nil {
			return nil, ErrDecrypt
		}
		if pt == nil {
			pt = []byte{}
		}
		return pt, nil
	}
	tok, ok := fernetToken(ciphertext)
	if !ok {
		return nil, ErrFormat
	}
	for i := range k.keys {
		if pt := fernet.VerifyAndDecrypt(tok, 0, []*fernet.Key{k.keys[i].fernet}); pt != nil {
			return pt, nil
		}
	}
	return nil, ErrDecrypt
}

// CurrentKeyID is the hex key id of the newest key. It is derived through a
// dedicated HKDF subkey and a hash, so it reveals nothing about the key.
func (k *Keyring) CurrentKeyID() string {
	if k == nil || len(k.keys) == 0 {
		return ""
	}
	return hex.EncodeToString(k.keys[0].id[:])
}

// KeyIDs returns the hex ids of all keys, newest first.
func (k *Keyring) KeyIDs() []string {
	if k == nil {
		return nil
	}
	ids := make([]string, len(k.keys))
	for i := range k.keys {
		ids[i] = hex.EncodeToString(k.keys[i].id[:])
	}
	return ids
}

// KeyIDOf reports which key sealed ciphertext: the hex key id for an
// envelope (whether or not that key is in the ring), LegacyFernetKeyID+":"+id
// for a Fernet token verified by a key of the ring, and LegacyFernetKeyID for
// a Fernet token that no key of the ring verifies. It returns ErrFormat for
// anything else.
func (k *Keyring) KeyIDOf(ciphertext []byte) (string, error) {
	if isEnvelope(ciphertext) {
		return hex.EncodeToString(ciphertext[1 : 1+keyIDSize]), nil
	}
	tok, ok := fernetToken(ciphertext)
	if !ok {
		return "", ErrFormat
	}
	if k != nil {
		for i := range k.keys {
			if fernet.VerifyAndDecrypt(tok, 0, []*fernet.Key{k.keys[i].fernet}) != nil {
				return LegacyFernetKeyID + ":" + hex.EncodeToString(k.keys[i].id[:]), nil
			}
		}
	}
	return LegacyFernetKeyID, nil
}

// NeedsRotation reports whether ciphertext should be re-sealed: it is a
// legacy Fernet token, an envelope sealed with a key other than the current
// one, or unrecognised data.
func (k *Keyring) NeedsRotation(ciphertext []byte) bool {
	if k == nil || len(k.keys) == 0 || !isEnvelope(ciphertext) {
		return true
	}
	return subtle.ConstantTimeCompare(ciphertext[1:1+keyIDSize], k.keys[0].id[:]) != 1
}

// IsLegacy reports whether ciphertext is a Fernet token, the Python
// testum's format, rather than an envelope written by Seal: such a token is
// not bound to its row and is re-sealed when testum starts.
func IsLegacy(ciphertext []byte) bool {
	if isEnvelope(ciphertext) {
		return false
	}
	_, ok := fernetToken(ciphertext)
	return ok
}

// Len is the number of keys in the ring.
func (k *Keyring) Len() int {
	if k == nil {
		return 0
	}
	return len(k.keys)
}

// String describes the ring without key material.
func (k *Keyring) String() string {
	return fmt.Sprintf("secrets.Keyring(%d keys, current %s)", k.Len(), k.CurrentKeyID())
}

// GoString is the same as String, so %#v never dumps key material.
func (k *Keyring) GoString() string { return k.String() }

// Format implements fmt.Formatter: every verb prints String.
func (k *Keyring) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// LogValue implements slog.LogValuer.
func (k *Keyring) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalText implements encoding.TextMarshaler so that encoding a Keyring
// (JSON, YAML, ...) yields its description rather than key material.
func (k *Keyring) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

func (k *Keyring) find(id []byte) *key {
	for i := range k.keys {
		if subtle.ConstantTimeCompare(k.keys[i].id[:], id) == 1 {
			return &k.keys[i]
		}
	}
	return nil
}

// isEnvelope reports whether b looks like an envelope written by Seal. A
// Fernet token is ASCII base64 ("gAAAAA..."), so its first byte is never 0x01.
func isEnvelope(b []byte) bool {
	return len(b) >= headerSize+16 && b[0] == versionGCM
}

// fernetToken returns the trimmed token if b looks like a Fernet token
// (URL-safe base64 whose decoded first byte is 0x80).
func fernetToken(b []byte) ([]byte, bool) {
	b = bytes.TrimSpace(b)
	if len(b) < 4 {
		return nil, false
	}
	var head [3]byte
	if _, err := base64.URLEncoding.Decode(head[:], b[:4]); err != nil || head[0] != 0x80 {
		return nil, false
	}
	return b, true
}

// Compile-time interface checks.
var (
	_ fmt.Formatter  = (*Keyring)(nil)
	_ fmt.GoStringer = (*Keyring)(nil)
	_ slog.LogValuer = (*Keyring)(nil)
)
