package auth

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const testSecret = "0123456789abcdef0123456789abcdef" // MinSecretKeyLen characters

// clock is a settable time source for Tokens.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestTokens(t *testing.T, secret string) (*Tokens, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	tk, err := NewTokens(secret, c.now)
	if err != nil {
		t.Fatal(err)
	}
	return tk, c
}

func TestNewTokensRefusesShortSecret(t *testing.T) {
	if _, err := NewTokens(testSecret[:MinSecretKeyLen-1], nil); err == nil || !strings.Contains(err.Error(), "SECRET_KEY") {
		t.Fatalf("short SECRET_KEY: %v", err)
	}
	if _, err := NewTokens(testSecret, nil); err != nil {
		t.Fatalf("SECRET_KEY of %d characters: %v", MinSecretKeyLen, err)
	}
}

func TestIssueVerify(t *testing.T) {
	tk, clk := newTestTokens(t, testSecret)
	expires := clk.t.Add(time.Hour)
	iss, err := tk.Issue(42, expires)
	if err != nil {
		t.Fatal(err)
	}
	if iss.CSRF == "" || !iss.ExpiresAt.Equal(expires) || len(iss.TokenHash) != 32 {
		t.Fatalf("issued %+v", iss)
	}
	v, err := tk.Verify(iss.Token)
	if err != nil {
		t.Fatal(err)
	}
	if v.SessionID != iss.SessionID || v.CSRF != iss.CSRF || !bytes.Equal(v.TokenHash, iss.TokenHash) {
		t.Fatalf("verified %+v, issued %+v", v, iss)
	}
	// The stored hash is not a hash of the whole token: a leaked session
	// table does not give tokens, nor does a token give its row directly.
	if bytes.Equal(iss.TokenHash, TokenHash(iss.Token)) {
		t.Fatal("TokenHash is of the token itself")
	}
	// Two sessions share nothing.
	other, err := tk.Issue(42, expires)
	if err != nil {
		t.Fatal(err)
	}
	if other.Token == iss.Token || other.SessionID == iss.SessionID || other.CSRF == iss.CSRF || bytes.Equal(other.TokenHash, iss.TokenHash) {
		t.Fatalf("two issues share a value: %+v and %+v", iss, other)
	}
}

func TestVerifyExpiry(t *testing.T) {
	tk, clk := newTestTokens(t, testSecret)
	start := clk.t
	iss, err := tk.Issue(1, start.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		at   time.Time
		ok   bool
	}{
		{"just issued", start, true},
		{"a second before expiry", start.Add(time.Minute - time.Second), true},
		{"at expiry", start.Add(time.Minute), false},
		{"after expiry", start.Add(time.Hour), false},
	}
	for _, c := range cases {
		clk.t = c.at
		_, err := tk.Verify(iss.Token)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
		if err != nil && !errors.Is(err, ErrBadToken) {
			t.Errorf("%s: %v does not wrap ErrBadToken", c.name, err)
		}
	}
}

// TestVerifyRefuses: every forged, foreign or incomplete token is refused
// with ErrBadToken.
func TestVerifyRefuses(t *testing.T) {
	tk, clk := newTestTokens(t, testSecret)
	foreign, _ := newTestTokens(t, strings.ToUpper(testSecret))
	iss, err := tk.Issue(7, clk.t.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	fromForeign, err := foreign.Issue(7, clk.t.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	valid := func() Claims {
		return Claims{SessionID: iss.SessionID.String(), CSRF: "csrf", RegisteredClaims: jwt.RegisteredClaims{
			Issuer: issuer, Subject: "7", ID: "jti",
			IssuedAt: jwt.NewNumericDate(clk.t), ExpiresAt: jwt.NewNumericDate(clk.t.Add(time.Hour)),
		}}
	}
	sign := func(m jwt.SigningMethod, key any, c Claims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// A token signed with our key and valid claims passes, so each case
	// below fails for its own reason.
	if _, err := tk.Verify(sign(jwt.SigningMethodHS256, tk.key, valid())); err != nil {
		t.Fatalf("hand-made valid token: %v", err)
	}
	parts := strings.Split(iss.Token, ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Map(func(r rune) rune {
		if r == 'A' {
			return 'B'
		}
		return 'A'
	}, parts[2])

	noExp, noSID, badSID, noJTI, noCSRF, otherIssuer := valid(), valid(), valid(), valid(), valid(), valid()
	noExp.ExpiresAt = nil
	noSID.SessionID = ""
	badSID.SessionID = "not-a-uuid"
	noJTI.ID = ""
	noCSRF.CSRF = ""
	otherIssuer.Issuer = "someone-else"

	cases := map[string]string{
		"empty":                 "",
		"garbage":               "not.a.token",
		"tampered signature":    tampered,
		"another server's key":  fromForeign.Token,
		"HS512":                 sign(jwt.SigningMethodHS512, tk.key, valid()),
		"alg none":              sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid()),
		"no expiry":             sign(jwt.SigningMethodHS256, tk.key, noExp),
		"no session id":         sign(jwt.SigningMethodHS256, tk.key, noSID),
		"session id not a uuid": sign(jwt.SigningMethodHS256, tk.key, badSID),
		"no token id":           sign(jwt.SigningMethodHS256, tk.key, noJTI),
		"no csrf":               sign(jwt.SigningMethodHS256, tk.key, noCSRF),
		"another issuer":        sign(jwt.SigningMethodHS256, tk.key, otherIssuer),
	}
	for name, token := range cases {
		if v, err := tk.Verify(token); !errors.Is(err, ErrBadToken) {
			t.Errorf("%s: Verify = %+v, %v; want ErrBadToken", name, v, err)
		}
	}
}

func TestSameCSRF(t *testing.T) {
	cases := []struct {
		want, got string
		same      bool
	}{
		{"abc", "abc", true},
		{"abc", "abd", false},
		{"abc", "ab", false},
		{"abc", "", false},
		{"", "", false}, // a session without a CSRF token never matches
	}
	for _, c := range cases {
		if got := SameCSRF(c.want, c.got); got != c.same {
			t.Errorf("SameCSRF(%q, %q) = %v", c.want, c.got, got)
		}
	}
}

func TestMasterKeys(t *testing.T) {
	t.Parallel()
	k1, err := GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := GenerateMasterKey()
	if k1 == k2 || len(k1) != 43 || strings.ContainsAny(k1, "+/=") {
		t.Fatalf("generated %q and %q: want distinct 43-character URL-safe keys", k1, k2)
	}
	if err := CheckKeyShape(k1); err != nil {
		t.Fatalf("a generated key has a bad shape: %v", err)
	}
	h, err := HashKey(k1)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h, k1) || !strings.HasPrefix(h, "$2") {
		t.Fatalf("hash %q is not a bcrypt hash of the key", h)
	}
	if !CheckKey(h, k1) {
		t.Fatal("the key does not match its hash")
	}
	if CheckKey(h, k2) || CheckKey(h, "") || CheckKey("", k1) {
		t.Fatal("a wrong key, an empty key or an unknown user's empty hash matched")
	}
}

// TestKeyShape: bcrypt reads at most 72 bytes, so a longer key is refused
// rather than silently cut; a key over the limit never matches, even when
// its first 72 bytes do.
func TestKeyShape(t *testing.T) {
	t.Parallel()
	cases := []struct {
		key string
		ok  bool
	}{
		{strings.Repeat("k", 7), false},
		{strings.Repeat("k", 8), true},
		{strings.Repeat("k", maxKeyLen), true},
		{strings.Repeat("k", maxKeyLen+1), false},
	}
	for _, c := range cases {
		if err := CheckKeyShape(c.key); (err == nil) != c.ok {
			t.Errorf("CheckKeyShape of %d bytes: %v", len(c.key), err)
		}
		if _, err := HashKey(c.key); !c.ok && err == nil {
			t.Errorf("HashKey of %d bytes: no error", len(c.key))
		}
	}
	long := strings.Repeat("k", maxKeyLen)
	h, err := HashKey(long)
	if err != nil {
		t.Fatal(err)
	}
	if CheckKey(h, long+"extra") {
		t.Fatal("a key longer than bcrypt reads matched on its first 72 bytes")
	}
}
