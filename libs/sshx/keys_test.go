package sshx

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// testKey is a private key generated for a test, in every PEM form the
// executor may be handed.
type testKey struct {
	name    string
	private crypto.Signer
	public  ssh.PublicKey
}

func newTestKey(t testing.TB, kind string) testKey {
	t.Helper()
	var (
		priv crypto.Signer
		err  error
	)
	switch kind {
	case "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "ecdsa":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ecdsa521":
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "rsa":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "rsa1024":
		priv, err = rsa.GenerateKey(rand.Reader, 1024)
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return testKey{name: kind, private: priv, public: pub}
}

// openSSH is the key in OpenSSH format, encrypted when passphrase is set.
func (k testKey) openSSH(t testing.TB, passphrase string) []byte {
	t.Helper()
	var (
		block *pem.Block
		err   error
	)
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(k.private, "test")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(k.private, "test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}

func (k testKey) pkcs8(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k.private)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// legacy is the key in its OpenSSL "traditional" form: PKCS#1 for RSA,
// SEC1 for ECDSA; encrypted PEM (Proc-Type) when passphrase is set.
func (k testKey) legacy(t testing.TB, passphrase string) []byte {
	t.Helper()
	var block *pem.Block
	switch p := k.private.(type) {
	case *rsa.PrivateKey:
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(p)}
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(p)
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	default:
		t.Fatalf("%s has no legacy PEM form", k.name)
	}
	if passphrase != "" {
		var err error
		// Deprecated and insecure, but old tools wrote keys this way and
		// the executor must read them.
		block, err = x509.EncryptPEMBlock(rand.Reader, block.Type, block.Bytes, []byte(passphrase), x509.PEMCipherAES256) //nolint:staticcheck // see above
		if err != nil {
			t.Fatal(err)
		}
	}
	return pem.EncodeToMemory(block)
}

func TestParsePrivateKey(t *testing.T) {
	const pass = "correct horse battery staple"
	ed := newTestKey(t, "ed25519")
	ec := newTestKey(t, "ecdsa")
	rs := newTestKey(t, "rsa")
	weak := newTestKey(t, "rsa1024")

	tests := []struct {
		name       string
		pem        []byte
		passphrase string
		want       ssh.PublicKey
		wantErr    error
	}{
		{"openssh ed25519", ed.openSSH(t, ""), "", ed.public, nil},
		{"openssh ecdsa", ec.openSSH(t, ""), "", ec.public, nil},
		{"openssh rsa", rs.openSSH(t, ""), "", rs.public, nil},
		{"openssh ed25519 with passphrase", ed.openSSH(t, pass), pass, ed.public, nil},
		{"openssh ecdsa with passphrase", ec.openSSH(t, pass), pass, ec.public, nil},
		{"openssh rsa with passphrase", rs.openSSH(t, pass), pass, rs.public, nil},
		{"pkcs8 ed25519", ed.pkcs8(t), "", ed.public, nil},
		{"pkcs8 ecdsa", ec.pkcs8(t), "", ec.public, nil},
		{"pkcs8 rsa", rs.pkcs8(t), "", rs.public, nil},
		{"pkcs1 rsa", rs.legacy(t, ""), "", rs.public, nil},
		{"sec1 ecdsa", ec.legacy(t, ""), "", ec.public, nil},
		{"pkcs1 rsa with passphrase", rs.legacy(t, pass), pass, rs.public, nil},
		{"sec1 ecdsa with passphrase", ec.legacy(t, pass), pass, ec.public, nil},
		{"passphrase given for a clear key is ignored", ed.openSSH(t, ""), pass, ed.public, nil},

		{"openssh passphrase missing", ed.openSSH(t, pass), "", nil, ErrPassphraseRequired},
		{"pkcs1 passphrase missing", rs.legacy(t, pass), "", nil, ErrPassphraseRequired},
		{"openssh wrong passphrase", ed.openSSH(t, pass), "Tr0ub4dor&3", nil, ErrWrongPassphrase},
		{"pkcs1 wrong passphrase", rs.legacy(t, pass), "Tr0ub4dor&3", nil, ErrWrongPassphrase},
		{"sec1 wrong passphrase", ec.legacy(t, pass), "Tr0ub4dor&3", nil, ErrWrongPassphrase},
		{"empty", nil, "", nil, ErrNotAKey},
		{"public key", ssh.MarshalAuthorizedKey(ed.public), "", nil, ErrNotAKey},
		{"certificate block", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), "", nil, ErrNotAKey},
		{"garbage in a key block", pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: []byte("nope")}), "", nil, ErrNotAKey},
		{"encrypted pkcs8", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), pass, nil, ErrUnsupportedKey},
		{"dsa", pem.EncodeToMemory(&pem.Block{Type: "DSA PRIVATE KEY", Bytes: []byte{1}}), "", nil, ErrUnsupportedKey},
		{"openssh dsa", openSSHDSA(), "", nil, ErrUnsupportedKey},
		{"openssh rsa 1024", weak.openSSH(t, ""), "", nil, ErrWeakKey},
		{"openssh rsa 1024 with passphrase", weak.openSSH(t, pass), pass, nil, ErrWeakKey},
		{"pkcs1 rsa 1024", weak.legacy(t, ""), "", nil, ErrWeakKey},
		{"pkcs8 rsa 1024", weak.pkcs8(t), "", nil, ErrWeakKey},
		{"over 16 KiB", append(ed.openSSH(t, ""), bytes.Repeat([]byte("\n"), MaxPrivateKeyBytes)...), "", nil, ErrKeyTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			signer, err := ParsePrivateKey(tc.pem, []byte(tc.passphrase))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if tc.passphrase != "" && strings.Contains(err.Error(), tc.passphrase) {
					t.Fatalf("error %q quotes the passphrase", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePrivateKey: %v", err)
			}
			if !sameKey(signer.PublicKey(), tc.want) {
				t.Fatalf("parsed public key %s, want %s", Fingerprint(signer.PublicKey()), Fingerprint(tc.want))
			}
		})
	}
}

// openSSHDSA is a DSA key in the openssh-key-v1 format, as ssh-keygen -t
// dsa wrote it before OpenSSH 9.8 dropped DSA: only its public half and
// framing matter here (the parser must refuse it by its type, with a clear
// message).
func openSSHDSA() []byte {
	pub := ssh.Marshal(struct {
		Type       string
		P, Q, G, Y []byte
	}{"ssh-dss", []byte{1}, []byte{1}, []byte{1}, []byte{1}})
	blob := append([]byte("openssh-key-v1\x00"), ssh.Marshal(struct {
		CipherName, KDFName, KDFOptions string
		NumKeys                         uint32
		PubKey, PrivKeyBlock            []byte
	}{"none", "none", "", 1, pub, []byte{0, 0, 0, 0}})...)
	return pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: blob})
}

func TestFingerprint(t *testing.T) {
	k := newTestKey(t, "ed25519")
	if got := Fingerprint(k.public); got != ssh.FingerprintSHA256(k.public) || !strings.HasPrefix(got, "SHA256:") {
		t.Fatalf("Fingerprint = %q", got)
	}
	if got := Fingerprint(nil); got != "" {
		t.Fatalf("Fingerprint(nil) = %q, want empty", got)
	}
}

func TestHostKeyAlgorithms(t *testing.T) {
	tests := []struct {
		kind string
		want []string
	}{
		{"ed25519", []string{ssh.KeyAlgoED25519}},
		{"ecdsa", []string{ssh.KeyAlgoECDSA256}},
		{"ecdsa521", []string{ssh.KeyAlgoECDSA521}},
		{"rsa", []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			got := hostKeyAlgorithms(newTestKey(t, tc.kind).public)
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("hostKeyAlgorithms = %v, want %v", got, tc.want)
			}
		})
	}
	if got := hostKeyAlgorithms(nil); got[0] != ssh.KeyAlgoED25519 {
		t.Fatalf("first contact prefers %s, want %s", got[0], ssh.KeyAlgoED25519)
	}
}
