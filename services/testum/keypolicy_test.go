package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"

	apiclient "github.com/testum/testum/libs/api/client"
)

// TestWeakOrOversizedPrivateKeysRefused: RSA under 2048 bits, DSA and PEM
// over 16 KiB are refused with a clear 400 wherever a key is given.
func TestWeakOrOversizedPrivateKeysRefused(t *testing.T) {
	t.Parallel()
	s := startServe(t, nil)
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := genKey(t, "ed25519", "")
	for name, tc := range map[string]struct {
		pem  []byte
		want string
	}{
		"rsa 1024": {pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(weak)}), "RSA key of 1024 bits"},
		"dsa":      {pem.EncodeToMemory(&pem.Block{Type: "DSA PRIVATE KEY", Bytes: []byte{0x30, 0}}), "DSA keys are insecure"},
		"17 KiB":   {append(bytes.Clone(good), bytes.Repeat([]byte("\n"), 17<<10-len(good))...), "too large"},
	} {
		for what, send := range map[string]func() (int, []byte, error){
			"platform": func() (int, []byte, error) {
				r, err := s.api.PlatformCreateWithBodyWithResponse(context.Background(), "application/json", jsonBody(t,
					map[string]any{"name": "k", "host": "127.0.0.1", "username": "u", "auth_method": "private_key", "private_key": string(tc.pem)}))
				return r.StatusCode(), r.Body, err
			},
			"credential": func() (int, []byte, error) {
				r, err := s.api.CredentialCreateWithResponse(context.Background(),
					apiclient.CredentialRequest{Name: "k", Kind: ptr("private_key"), PrivateKey: ptr(string(tc.pem))})
				return r.StatusCode(), r.Body, err
			},
		} {
			st, resp, err := send()
			if err != nil {
				t.Fatal(err)
			}
			if st != http.StatusBadRequest || !strings.Contains(string(resp), tc.want) {
				t.Errorf("%s, %s: %d %s; want 400 saying %q", what, name, st, resp, tc.want)
			}
		}
	}
	// The same key without the padding is fine.
	s.createPlatform(t, map[string]any{"name": "ok", "host": "127.0.0.1", "username": "u", "auth_method": "private_key", "private_key": string(good)})
}
