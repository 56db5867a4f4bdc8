package sshx

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// ParsePrivateKey reads a PEM private key (OpenSSH, PKCS#1, PKCS#8, SEC1;
// ed25519, ecdsa or rsa). A passphrase given for an unencrypted key is
// ignored. DSA keys, RSA keys under MinRSABits and inputs over
// MaxPrivateKeyBytes are refused. Errors wrap ErrNotAKey, ErrUnsupportedKey,
// ErrWeakKey, ErrKeyTooLarge, ErrPassphraseRequired or ErrWrongPassphrase and
// never quote the key or the passphrase.
func ParsePrivateKey(pemBytes, passphrase []byte) (ssh.Signer, error) {
	if len(pemBytes) > MaxPrivateKeyBytes {
		// An RSA key of 16384 bits is about 12 KiB of PEM: anything larger
		// is not a key, and parsing it would only cost time.
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrKeyTooLarge, len(pemBytes), MaxPrivateKeyBytes)
	}
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

	if block.Type == "OPENSSH PRIVATE KEY" && openSSHKeyType(block.Bytes) == keyAlgoDSA {
		return nil, fmt.Errorf("%w: DSA keys are insecure and refused by current OpenSSH", ErrUnsupportedKey)
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
	if signer.PublicKey().Type() == keyAlgoDSA {
		return nil, fmt.Errorf("%w: DSA keys are insecure and refused by current OpenSSH", ErrUnsupportedKey)
	}
	if err := checkStrength(signer.PublicKey()); err != nil {
		return nil, err
	}
	return signer, nil
}

// MaxPrivateKeyBytes bounds the PEM text of a private key.
const MaxPrivateKeyBytes = 16 << 10

// MinRSABits is the smallest RSA modulus accepted (NIST SP 800-131A; OpenSSH
// 9.x refuses RSA keys under 1024 bits and warns under 2048).
const MinRSABits = 2048

// keyAlgoDSA is the wire name of DSA keys, which ParsePrivateKey refuses
// (x/crypto deprecates its own constant for the same reason).
const keyAlgoDSA = "ssh-dss"

// checkStrength refuses RSA keys whose modulus is too short to be safe.
func checkStrength(pub ssh.PublicKey) error {
	cpk, ok := pub.(ssh.CryptoPublicKey)
	if !ok {
		return nil
	}
	if rk, ok := cpk.CryptoPublicKey().(*rsa.PublicKey); ok && rk.N.BitLen() < MinRSABits {
		return fmt.Errorf("%w: an RSA key of %d bits; use at least %d bits (or ed25519)", ErrWeakKey, rk.N.BitLen(), MinRSABits)
	}
	return nil
}

// openSSHKeyType reads the key type of an "openssh-key-v1" blob from its
// public key, which is stored in the clear even when the key is encrypted;
// "" when the blob is not one. The library only says "unhandled key type"
// for a DSA key in this format.
func openSSHKeyType(b []byte) string {
	const magic = "openssh-key-v1\x00"
	rest, ok := bytes.CutPrefix(b, []byte(magic))
	if !ok {
		return ""
	}
	var w struct {
		CipherName, KDFName, KDFOptions string
		NumKeys                         uint32
		PubKey, PrivKeyBlock            []byte
	}
	if err := ssh.Unmarshal(rest, &w); err != nil {
		return ""
	}
	var pub struct {
		Type string
		Rest []byte `ssh:"rest"`
	}
	if err := ssh.Unmarshal(w.PubKey, &pub); err != nil {
		return ""
	}
	return pub.Type
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
