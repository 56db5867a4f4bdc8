package secrets_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/fernet/fernet-go"

	"github.com/testum/testum/libs/secrets"
)

func newKey(t *testing.T) string {
	t.Helper()
	k, err := secrets.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ring(t *testing.T, keys ...string) *secrets.Keyring {
	t.Helper()
	kr, err := secrets.ParseKeyring(strings.Join(keys, ","))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestGenerateKeyIsFernetFormat(t *testing.T) {
	k := newKey(t)
	if len(k) != 44 {
		t.Fatalf("key length = %d, want 44", len(k))
	}
	raw, err := base64.URLEncoding.DecodeString(k)
	if err != nil || len(raw) != 32 {
		t.Fatalf("key does not decode to 32 bytes: %v", err)
	}
	if _, err := fernet.DecodeKey(k); err != nil {
		t.Fatalf("fernet-go rejects the key: %v", err)
	}
	if newKey(t) == k {
		t.Fatal("two generated keys are equal")
	}
}

func TestRoundTrip(t *testing.T) {
	kr := ring(t, newKey(t))
	for _, pt := range [][]byte{nil, {}, []byte("hunter2"), bytes.Repeat([]byte{0xff, 0}, 5000)} {
		ad := []byte("platforms/password/42")
		ct, err := kr.Seal(pt, ad)
		if err != nil {
			t.Fatal(err)
		}
		if len(pt) > 0 && bytes.Contains(ct, pt) {
			t.Fatal("ciphertext contains the plaintext")
		}
		got, err := kr.Open(ct, ad)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if got == nil || !bytes.Equal(got, pt) {
			t.Fatalf("Open = %q, want %q", got, pt)
		}
		if id, err := kr.KeyIDOf(ct); err != nil || id != kr.CurrentKeyID() {
			t.Fatalf("KeyIDOf = %q, %v; want %q", id, err, kr.CurrentKeyID())
		}
		if kr.NeedsRotation(ct) {
			t.Fatal("fresh ciphertext needs rotation")
		}
	}
	a, _ := kr.Seal([]byte("same"), nil)
	b, _ := kr.Seal([]byte("same"), nil)
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same plaintext are equal (nonce reuse)")
	}
}

func TestEnvelopeLayout(t *testing.T) {
	kr := ring(t, newKey(t))
	ct, err := kr.Seal([]byte("abc"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ct[0] != 1 {
		t.Fatalf("version byte = %d, want 1", ct[0])
	}
	if got := fmt.Sprintf("%x", ct[1:9]); got != kr.CurrentKeyID() {
		t.Fatalf("envelope key id = %s, want %s", got, kr.CurrentKeyID())
	}
	if want := 1 + 8 + 12 + 3 + 16; len(ct) != want {
		t.Fatalf("len = %d, want %d", len(ct), want)
	}
}

func TestWrongADFails(t *testing.T) {
	kr := ring(t, newKey(t))
	ct, err := kr.Seal([]byte("secret"), []byte("platforms/password/1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ad := range [][]byte{[]byte("platforms/password/2"), nil, []byte("platforms/password/1x")} {
		if _, err := kr.Open(ct, ad); !errors.Is(err, secrets.ErrDecrypt) {
			t.Fatalf("Open with ad %q: error = %v, want ErrDecrypt", ad, err)
		}
	}
	if _, err := kr.Open(ct, []byte("platforms/password/2")); err.Error() != "secrets: cannot decrypt (wrong key or tampered data)" {
		t.Fatalf("error message = %q", err)
	}
}

func TestTamperedFails(t *testing.T) {
	kr := ring(t, newKey(t))
	ct, err := kr.Seal([]byte("secret value"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range ct {
		bad := bytes.Clone(ct)
		bad[i] ^= 0x01
		if _, err := kr.Open(bad, []byte("ad")); err == nil {
			t.Fatalf("Open succeeded with byte %d flipped", i)
		}
	}
	if _, err := kr.Open(ct[:len(ct)-1], []byte("ad")); err == nil {
		t.Fatal("Open succeeded on a truncated ciphertext")
	}
	if _, err := kr.Open([]byte("garbage"), nil); !errors.Is(err, secrets.ErrFormat) {
		t.Fatalf("Open(garbage) error = %v, want ErrFormat", err)
	}
}

func TestWrongKeyFails(t *testing.T) {
	ct, err := ring(t, newKey(t)).Seal([]byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ring(t, newKey(t)).Open(ct, nil); !errors.Is(err, secrets.ErrDecrypt) {
		t.Fatalf("error = %v, want ErrDecrypt", err)
	}
}

func TestRotation(t *testing.T) {
	oldKey, newK := newKey(t), newKey(t)
	oldRing := ring(t, oldKey)
	ct, err := oldRing.Seal([]byte("pw"), []byte("row 7"))
	if err != nil {
		t.Fatal(err)
	}
	rotated := ring(t, newK, oldKey)
	if rotated.CurrentKeyID() == oldRing.CurrentKeyID() {
		t.Fatal("current key id did not change")
	}
	got, err := rotated.Open(ct, []byte("row 7"))
	if err != nil || string(got) != "pw" {
		t.Fatalf("Open old ciphertext = %q, %v", got, err)
	}
	if !rotated.NeedsRotation(ct) {
		t.Fatal("old ciphertext does not need rotation")
	}
	if id, _ := rotated.KeyIDOf(ct); id != oldRing.CurrentKeyID() {
		t.Fatalf("KeyIDOf = %s, want old key id %s", id, oldRing.CurrentKeyID())
	}
	re, err := rotated.Seal(got, []byte("row 7"))
	if err != nil {
		t.Fatal(err)
	}
	if rotated.NeedsRotation(re) {
		t.Fatal("re-sealed ciphertext needs rotation")
	}
	// Once the old key is dropped the old ciphertext cannot be read.
	if _, err := ring(t, newK).Open(ct, []byte("row 7")); !errors.Is(err, secrets.ErrDecrypt) {
		t.Fatalf("Open without the old key: %v", err)
	}
	if ids := rotated.KeyIDs(); len(ids) != 2 || ids[0] != rotated.CurrentKeyID() {
		t.Fatalf("KeyIDs = %v", ids)
	}
}

func TestLegacyFernet(t *testing.T) {
	oldKey, newK := newKey(t), newKey(t)
	fk, err := fernet.DecodeKey(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := fernet.EncryptAndSign([]byte("legacy password"), fk)
	if err != nil {
		t.Fatal(err)
	}
	kr := ring(t, newK, oldKey)
	got, err := kr.Open(tok, []byte("ad is ignored for Fernet"))
	if err != nil || string(got) != "legacy password" {
		t.Fatalf("Open(fernet token) = %q, %v", got, err)
	}
	// As stored in a text column, possibly with a trailing newline.
	if got, err := kr.Open([]byte(string(tok)+"\n"), nil); err != nil || string(got) != "legacy password" {
		t.Fatalf("Open(fernet token + newline) = %q, %v", got, err)
	}
	if !kr.NeedsRotation(tok) {
		t.Fatal("Fernet token does not need rotation")
	}
	id, err := kr.KeyIDOf(tok)
	if err != nil || id != secrets.LegacyFernetKeyID+":"+kr.KeyIDs()[1] {
		t.Fatalf("KeyIDOf = %q, %v", id, err)
	}
	other := ring(t, newK)
	if _, err := other.Open(tok, nil); !errors.Is(err, secrets.ErrDecrypt) {
		t.Fatalf("Open with the wrong key: %v", err)
	}
	if id, err := other.KeyIDOf(tok); err != nil || id != secrets.LegacyFernetKeyID {
		t.Fatalf("KeyIDOf unverifiable token = %q, %v", id, err)
	}
	bad := bytes.Clone(tok)
	bad[len(bad)-5] ^= 0x01
	if _, err := kr.Open(bad, nil); err == nil {
		t.Fatal("Open succeeded on a tampered Fernet token")
	}
}

// A token produced by Python's cryptography.fernet (the spec's test vector).
func TestLegacyFernetPythonVector(t *testing.T) {
	const key = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="
	const tok = "gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA=="
	got, err := ring(t, key).Open([]byte(tok), nil)
	if err != nil || string(got) != "hello" {
		t.Fatalf("Open = %q, %v", got, err)
	}
}

func TestParseKeyringErrors(t *testing.T) {
	good := newKey(t)
	short := base64.URLEncoding.EncodeToString([]byte("only sixteen byt"))
	cases := []struct {
		in, want string
	}{
		{"", "empty keyring"},
		{"   ", "empty keyring"},
		{good + ",", "entry 2 of 2 is empty"},
		{"," + good, "entry 1 of 2 is empty"},
		{good + ",not base64!!", "entry 2 of 2"},
		{short, "entry 1 of 1: key decodes to 16 bytes, want 32"},
		{good + "," + good, "entry 2 duplicates entry 1"},
	}
	for _, tc := range cases {
		_, err := secrets.ParseKeyring(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseKeyring(...) error = %v, want it to contain %q", err, tc.want)
			continue
		}
		for _, part := range strings.Split(tc.in, ",") {
			if p := strings.TrimSpace(part); len(p) > 4 && strings.Contains(err.Error(), p) {
				t.Errorf("error %q echoes key material", err)
			}
		}
	}
	// Spaces around entries and unpadded keys are accepted.
	kr, err := secrets.ParseKeyring(" " + good + " , " + strings.TrimRight(newKey(t), "="))
	if err != nil || kr.Len() != 2 {
		t.Fatalf("ParseKeyring with spaces = %v, %v", kr, err)
	}
}

func TestFormattingHidesKeys(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	kr := ring(t, k1, k2)
	raw1, _ := base64.URLEncoding.DecodeString(k1)
	type holder struct {
		Ring *secrets.Keyring
		ring *secrets.Keyring
	}
	h := holder{kr, kr}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("ring", "kr", kr, "h", h)
	var jsonLogged strings.Builder
	slog.New(slog.NewJSONHandler(&jsonLogged, nil)).Info("ring", "kr", kr)
	js, _ := json.Marshal(h)
	outs := []string{
		fmt.Sprint(kr), fmt.Sprintf("%v", kr), fmt.Sprintf("%+v", kr), fmt.Sprintf("%#v", kr),
		fmt.Sprintf("%s", kr), fmt.Sprintf("%q", kr), fmt.Sprintf("%x", kr), fmt.Sprintf("%v", *kr),
		fmt.Sprintf("%+v", h), fmt.Sprintf("%#v", h), fmt.Sprintf("%#v", *kr),
		logged.String(), jsonLogged.String(), string(js), kr.String(),
	}
	for _, s := range outs {
		for _, secret := range []string{k1, k2, strings.TrimRight(k1, "="), fmt.Sprintf("%x", raw1), fmt.Sprintf("%d", raw1)} {
			if strings.Contains(s, secret) {
				t.Fatalf("formatted keyring contains key material: %s", s)
			}
		}
	}
	want := fmt.Sprintf("secrets.Keyring(2 keys, current %s)", kr.CurrentKeyID())
	if kr.String() != want || fmt.Sprintf("%+v", kr) != want || fmt.Sprintf("%#v", kr) != want {
		t.Fatalf("String = %q, want %q", kr.String(), want)
	}
	if !strings.Contains(logged.String(), want) {
		t.Fatalf("slog output %q lacks %q", logged.String(), want)
	}
}

func TestKeyIDIsStableAndOpaque(t *testing.T) {
	k := newKey(t)
	a, b := ring(t, k), ring(t, k)
	if a.CurrentKeyID() != b.CurrentKeyID() || len(a.CurrentKeyID()) != 16 {
		t.Fatalf("key ids %q, %q", a.CurrentKeyID(), b.CurrentKeyID())
	}
	raw, _ := base64.URLEncoding.DecodeString(k)
	if strings.Contains(fmt.Sprintf("%x", raw), a.CurrentKeyID()) {
		t.Fatal("key id is a substring of the key")
	}
}
