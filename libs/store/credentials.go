package store

import (
	"context"
	"fmt"

	"github.com/testum/testum/libs/db"
	"github.com/testum/testum/libs/testum"
)

// NewSecret is a credential to store. Plaintext fields are sealed before
// they reach the database and never leave this package otherwise.
type NewSecret struct {
	Name        string // "" for a platform's inline secret
	Kind        testum.AuthMethod
	Secret      []byte // the password or the PEM private key
	Passphrase  []byte // the key's passphrase, if any
	PublicKey   string // for keys: authorized_keys line of the public half
	Fingerprint string
}

// Secret is an opened credential, for the executor's SSH login only.
type Secret struct {
	Kind       testum.AuthMethod
	Secret     []byte
	Passphrase []byte
}

// secretAD binds a ciphertext to its row and column: a ciphertext copied
// into another row or column does not open.
func secretAD(id int64, column string) []byte {
	return []byte(fmt.Sprintf("credentials/%d/%s", id, column))
}

// CredentialCreate seals and stores a credential.
func (tx *Tx) CredentialCreate(ctx context.Context, ns NewSecret) (testum.Credential, error) {
	if tx.s.sealer == nil {
		return testum.Credential{}, fmt.Errorf("credential: no encryption key configured")
	}
	id, err := tx.q.CredentialNextID(ctx)
	if err != nil {
		return testum.Credential{}, wrap(err, "credential id")
	}
	secret, err := tx.s.sealer.Seal(ns.Secret, secretAD(id, "secret"))
	if err != nil {
		return testum.Credential{}, fmt.Errorf("seal credential: %w", err)
	}
	var pass []byte
	if len(ns.Passphrase) > 0 {
		if pass, err = tx.s.sealer.Seal(ns.Passphrase, secretAD(id, "passphrase")); err != nil {
			return testum.Credential{}, fmt.Errorf("seal credential: %w", err)
		}
	}
	row, err := tx.q.CredentialCreate(ctx, db.CredentialCreateParams{
		ID: id, Name: optString(ns.Name), Kind: string(ns.Kind), Secret: secret, Passphrase: pass,
		KeyID: tx.s.sealer.CurrentKeyID(), PublicKey: optString(ns.PublicKey), Fingerprint: optString(ns.Fingerprint),
	})
	if err != nil {
		what := "credential"
		if ns.Name != "" {
			what = fmt.Sprintf("credential %q", ns.Name)
		}
		return testum.Credential{}, wrap(err, what)
	}
	return credentialFromRow(row), nil
}

// CredentialOpen returns the decrypted secret of a credential.
func (s *Store) CredentialOpen(ctx context.Context, id int64) (Secret, error) {
	row, err := s.q.CredentialGet(ctx, id)
	if err != nil {
		return Secret{}, wrap(err, fmt.Sprintf("credential %d", id))
	}
	if s.sealer == nil {
		return Secret{}, fmt.Errorf("credential %d: no encryption key configured", id)
	}
	sec := Secret{Kind: testum.AuthMethod(row.Kind)}
	if sec.Secret, err = s.sealer.Open(row.Secret, secretAD(id, "secret")); err != nil {
		return Secret{}, fmt.Errorf("credential %d: %w", id, err)
	}
	if len(row.Passphrase) > 0 {
		if sec.Passphrase, err = s.sealer.Open(row.Passphrase, secretAD(id, "passphrase")); err != nil {
			return Secret{}, fmt.Errorf("credential %d passphrase: %w", id, err)
		}
	}
	return sec, nil
}

func credentialFromRow(r db.Credential) testum.Credential {
	return testum.Credential{
		ID: r.ID, Name: deref(r.Name), Kind: testum.AuthMethod(r.Kind), HasPassphrase: len(r.Passphrase) > 0,
		PublicKey: deref(r.PublicKey), Fingerprint: deref(r.Fingerprint), KeyID: r.KeyID,
		OwnerPlatform: r.OwnerPlatform, CreatedAt: r.CreatedAt,
	}
}

// Credential returns a credential's public facts (never its secret).
func (tx *Tx) Credential(ctx context.Context, id int64) (testum.Credential, error) {
	row, err := tx.q.CredentialGet(ctx, id)
	if err != nil {
		return testum.Credential{}, wrap(err, fmt.Sprintf("credential %d", id))
	}
	return credentialFromRow(row), nil
}
