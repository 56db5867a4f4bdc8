package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/hkdf"
)

// MinSecretKeyLen is the shortest SECRET_KEY accepted.
const MinSecretKeyLen = 32

// bcryptCost is the work factor of master key hashes (OWASP: at least 10).
const bcryptCost = 10

// maxKeyLen is bcrypt's input limit; longer keys would be silently cut.
const maxKeyLen = 72

// GenerateMasterKey returns a new random master key: 32 bytes, URL-safe
// base64, so it can be typed, pasted and sent in JSON as is.
func GenerateMasterKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("master key: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// HashKey returns the bcrypt hash of a master key.
func HashKey(key string) (string, error) {
	if err := CheckKeyShape(key); err != nil {
		return "", err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(key), bcryptCost)
	if err != nil {
		return "", fmt.Errorf("hash master key: %w", err)
	}
	return string(h), nil
}

// CheckKeyShape rejects keys bcrypt cannot hash faithfully or that are too
// short to resist guessing.
func CheckKeyShape(key string) error {
	switch {
	case len(key) < 8:
		return errors.New("the master key must be at least 8 characters")
	case len(key) > maxKeyLen:
		return fmt.Errorf("the master key must be at most %d bytes", maxKeyLen)
	}
	return nil
}

// dummyHash is compared against when the user does not exist, so that a
// login for an unknown name costs as much as one with a wrong key.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("testum-no-such-user"), bcryptCost)

// CheckKey reports whether key matches hash; hash "" (unknown user) still
// spends the time of a comparison.
func CheckKey(hash, key string) bool {
	if len(key) > maxKeyLen {
		return false
	}
	if hash == "" {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(key))
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(key)) == nil
}

// Claims are what a token carries: it names a server-side session and
// proves nothing by itself; every request checks that session.
type Claims struct {
	SessionID string `json:"sid"`
	CSRF      string `json:"csrf"`
	jwt.RegisteredClaims
}

// Tokens issues and verifies session tokens: HS256 only, exp required.
type Tokens struct {
	key []byte
	now func() time.Time
}

const issuer = "testum"

// NewTokens derives the signing key from SECRET_KEY.
func NewTokens(secretKey string, now func() time.Time) (*Tokens, error) {
	if len(secretKey) < MinSecretKeyLen {
		return nil, fmt.Errorf("SECRET_KEY must be at least %d characters", MinSecretKeyLen)
	}
	key := make([]byte, 32)
	if _, err := hkdf.New(sha256.New, []byte(secretKey), nil, []byte("testum session tokens v1")).Read(key); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Tokens{key: key, now: now}, nil
}

// Issued is a new token and what the server keeps of it.
type Issued struct {
	Token     string
	SessionID uuid.UUID
	TokenHash []byte // sha256 of the token id: the session row holds this, never the token
	CSRF      string
	ExpiresAt time.Time
}

// Issue makes a token for a new session that ends at expires.
func (t *Tokens) Issue(userID int64, expires time.Time) (Issued, error) {
	sid, err := uuid.NewRandom()
	if err != nil {
		return Issued{}, err
	}
	jti, err := randomString(24)
	if err != nil {
		return Issued{}, err
	}
	csrf, err := randomString(24)
	if err != nil {
		return Issued{}, err
	}
	now := t.now()
	claims := Claims{SessionID: sid.String(), CSRF: csrf, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: issuer, Subject: fmt.Sprint(userID), ID: jti,
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(expires),
	}}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.key)
	if err != nil {
		return Issued{}, fmt.Errorf("sign token: %w", err)
	}
	return Issued{Token: s, SessionID: sid, TokenHash: TokenHash(jti), CSRF: csrf, ExpiresAt: expires}, nil
}

// ErrBadToken is every reason a token is refused; the reason itself is not
// told to the client.
var ErrBadToken = errors.New("invalid or expired session")

// Verified is what a valid token names.
type Verified struct {
	SessionID uuid.UUID
	TokenHash []byte
	CSRF      string
}

// Verify checks the signature (HS256 only), issuer and expiry (required).
func (t *Tokens) Verify(token string) (Verified, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(), jwt.WithIssuer(issuer), jwt.WithTimeFunc(t.now), jwt.WithLeeway(0))
	if err != nil {
		return Verified{}, fmt.Errorf("%w (%v)", ErrBadToken, err)
	}
	sid, err := uuid.Parse(c.SessionID)
	if err != nil || c.ID == "" || c.CSRF == "" {
		return Verified{}, fmt.Errorf("%w (claims)", ErrBadToken)
	}
	return Verified{SessionID: sid, TokenHash: TokenHash(c.ID), CSRF: c.CSRF}, nil
}

// TokenHash is the stored form of a token id.
func TokenHash(jti string) []byte {
	h := sha256.Sum256([]byte("testum token " + jti))
	return h[:]
}

// SameCSRF compares a presented CSRF token in constant time.
func SameCSRF(want, got string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
