package sshx

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// ParsePrivateKey reads a PEM private key (OpenSSH, PKCS#1, PKCS#8, SEC1;
// ed25519, ecdsa or rsa). A passphrase given for an unencrypted key is
// ignored. Errors wrap ErrNotAKey, ErrUnsupportedKey, ErrPassphraseRequired
// or ErrWrongPassphrase and never quote the key or the passphrase.
func ParsePrivateKey(pemBytes, passphrase []byte) (ssh.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block found", ErrNotAKey)
	}
	switch block.Type {
	case "OPENSSH PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY":
	case "ENCRYPTED PRIVATE KEY":
		return nil, fmt.Errorf("%w: encrypted PKCS#8 keys cannot be read; convert the key with ssh-keygen -p", ErrUnsupportedKey)
	case "DSA PRIVATE KEY":
		return nil, fmt.Errorf("%w: DSA keys are insecure and refused by current OpenSSH", ErrUnsupportedKey)
	default:
		if strings.Contains(block.Type, "PRIVATE KEY") {
			return nil, fmt.Errorf("%w: %q", ErrUnsupportedKey, block.Type)
		}
		return nil, fmt.Errorf("%w: the PEM block is a %q", ErrNotAKey, block.Type)
	}

	signer, err := ssh.ParsePrivateKey(pemBytes)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if len(passphrase) == 0 {
			return nil, ErrPassphraseRequired
		}
		signer, err = ssh.ParsePrivateKeyWithPassphrase(pemBytes, passphrase)
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, ErrWrongPassphrase
		}
	}
	if err != nil {
		// The library's messages name the problem ("unsupported key type",
		// "malformed OpenSSH key") without quoting the key.
		return nil, fmt.Errorf("%w: %w", ErrNotAKey, err)
	}
	if signer.PublicKey().Type() == ssh.InsecureKeyAlgoDSA {
		return nil, fmt.Errorf("%w: DSA keys are insecure and refused by current OpenSSH", ErrUnsupportedKey)
	}
	return signer, nil
}

// Fingerprint returns the OpenSSH SHA256 fingerprint of k ("SHA256:…"), or
// "" for nil.
func Fingerprint(k ssh.PublicKey) string {
	if k == nil {
		return ""
	}
	return ssh.FingerprintSHA256(k)
}

// firstContactAlgorithms is the host key preference when nothing is pinned:
// modern keys first, as OpenSSH does, with SHA-1 RSA last for old hosts.
var firstContactAlgorithms = []string{
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA,
}

var rsaAlgorithms = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}

// hostKeyAlgorithms is what the client accepts from a host so that, with a
// key pinned, the host presents that very key rather than another of its
// keys (which would then look like a changed key).
func hostKeyAlgorithms(pinned ssh.PublicKey) []string {
	if pinned == nil {
		return firstContactAlgorithms
	}
	if t := pinned.Type(); t != ssh.KeyAlgoRSA {
		return []string{t}
	}
	return rsaAlgorithms
}

func sameKey(a, b ssh.PublicKey) bool {
	return a.Type() == b.Type() && bytes.Equal(a.Marshal(), b.Marshal())
}

// hostKeyError is what the host key callback returns to reject a key.
type hostKeyError struct {
	offered ssh.PublicKey
	msg     string
}

func (e *hostKeyError) Error() string { return e.msg }
