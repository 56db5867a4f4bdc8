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
func (s *Store) CredentialCreate(ctx context.Context, ns NewSecret) (testum.Credential, error) {
	if s.sealer == nil {
		return testum.Credential{}, fmt.Errorf("credential: no encryption key configured")
	}
	id, err := s.q.CredentialNextID(ctx)
	if err != nil {
		return testum.Credential{}, wrap(err, "credential id")
	}
	secret, err := s.sealer.Seal(ns.Secret, secretAD(id, "secret"))
	if err != nil {
		return testum.Credential{}, fmt.Errorf("seal credential: %w", err)
	}
	var pass []byte
	if len(ns.Passphrase) > 0 {
		if pass, err = s.sealer.Seal(ns.Passphrase, secretAD(id, "passphrase")); err != nil {
			return testum.Credential{}, fmt.Errorf("seal credential: %w", err)
		}
	}
	row, err := s.q.CredentialCreate(ctx, db.CredentialCreateParams{
		ID: id, Name: optString(ns.Name), Kind: string(ns.Kind), Secret: secret, Passphrase: pass,
		KeyID: s.sealer.CurrentKeyID(), PublicKey: optString(ns.PublicKey), Fingerprint: optString(ns.Fingerprint),
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

// Credential returns a credential's public facts (never its secret).
func (s *Store) Credential(ctx context.Context, id int64) (testum.Credential, error) {
	row, err := s.q.CredentialGet(ctx, id)
	if err != nil {
		return testum.Credential{}, wrap(err, fmt.Sprintf("credential %d", id))
	}
	return credentialFromRow(row), nil
}

// CredentialByName returns a named credential's public facts.
func (s *Store) CredentialByName(ctx context.Context, name string) (testum.Credential, error) {
	row, err := s.q.CredentialByName(ctx, &name)
	if err != nil {
		return testum.Credential{}, wrap(err, "credential "+name)
	}
	return credentialFromRow(row), nil
}

// CredentialList pages through the named (reusable) credentials.
func (s *Store) CredentialList(ctx context.Context, limit, offset int) ([]testum.Credential, int, error) {
	page := func(limit, offset int) ([]db.CredentialListRow, error) {
		return s.q.CredentialList(ctx, db.CredentialListParams{Lim: int32(limit), Off: int32(offset)})
	}
	rows, total, err := paged(page, limit, offset, func(r db.CredentialListRow) int64 { return r.Total })
	if err != nil {
		return nil, 0, wrap(err, "credentials")
	}
	out := make([]testum.Credential, len(rows))
	for i, r := range rows {
		out[i] = credentialFromRow(r.Credential)
	}
	return out, int(total), nil
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
	return s.openRow(row)
}

// CredentialsOpen returns the decrypted secrets of several credentials,
// read in one query, by id. A credential that does not exist or does not
// open is left out: CredentialOpen of its id says why.
func (s *Store) CredentialsOpen(ctx context.Context, ids []int64) (map[int64]Secret, error) {
	if len(ids) == 0 {
		return map[int64]Secret{}, nil
	}
	if s.sealer == nil {
		return nil, fmt.Errorf("credentials: no encryption key configured")
	}
	rows, err := s.q.CredentialsGetMany(ctx, ids)
	if err != nil {
		return nil, wrap(err, "credentials")
	}
	out := make(map[int64]Secret, len(rows))
	for _, row := range rows {
		if sec, err := s.openRow(row); err == nil {
			out[row.ID] = sec
		}
	}
	return out, nil
}

// openRow decrypts a credential row.
func (s *Store) openRow(row db.Credential) (Secret, error) {
	sec := Secret{Kind: testum.AuthMethod(row.Kind)}
	var err error
	if sec.Secret, err = s.sealer.Open(row.Secret, secretAD(row.ID, "secret")); err != nil {
		return Secret{}, fmt.Errorf("credential %d: %w", row.ID, err)
	}
	if len(row.Passphrase) > 0 {
		if sec.Passphrase, err = s.sealer.Open(row.Passphrase, secretAD(row.ID, "passphrase")); err != nil {
			clear(sec.Secret)
			return Secret{}, fmt.Errorf("credential %d passphrase: %w", row.ID, err)
		}
	}
	return sec, nil
}

// CredentialDelete deletes a named credential no platform uses.
func (s *Store) CredentialDelete(ctx context.Context, id int64) (testum.Credential, error) {
	var out testum.Credential
	err := s.atomically(ctx, func(tx *Store) error {
		var err error
		out, err = tx.credentialDelete(ctx, id)
		return err
	})
	return out, err
}

func (s *Store) credentialDelete(ctx context.Context, id int64) (testum.Credential, error) {
	c, err := s.Credential(ctx, id)
	if err != nil {
		return c, err
	}
	if c.Name == "" {
		return c, testum.NotFound("credential %d not found", id)
	}
	n, err := s.q.CredentialInUse(ctx, &id)
	if err != nil {
		return c, wrap(err, "credential")
	}
	if n > 0 {
		return c, testum.Conflict("credential %q is used by %d platform(s)", c.Name, n)
	}
	_, err = s.q.CredentialDelete(ctx, id)
	return c, wrap(err, "credential")
}

// Rotation is what CredentialsRotate did.
type Rotation struct{ Checked, Resealed int }

// CredentialsRotate re-encrypts, with the newest key, every secret sealed
// with another key or in the legacy Fernet format, in one transaction.
func (s *Store) CredentialsRotate(ctx context.Context, needs func(ct []byte) bool) (Rotation, error) {
	var out Rotation
	err := s.atomically(ctx, func(tx *Store) error {
		var err error
		out, err = tx.credentialsRotate(ctx, needs)
		return err
	})
	return out, err
}

func (s *Store) credentialsRotate(ctx context.Context, needs func(ct []byte) bool) (Rotation, error) {
	var r Rotation
	rows, err := s.q.CredentialsAll(ctx)
	if err != nil {
		return r, wrap(err, "credentials")
	}
	for _, row := range rows {
		r.Checked++
		if !needs(row.Secret) && (len(row.Passphrase) == 0 || !needs(row.Passphrase)) {
			continue
		}
		secret, err := s.sealer.Open(row.Secret, secretAD(row.ID, "secret"))
		if err != nil {
			return r, fmt.Errorf("credential %d: %w", row.ID, err)
		}
		sealed, err := s.sealer.Seal(secret, secretAD(row.ID, "secret"))
		if err != nil {
			return r, err
		}
		var pass []byte
		if len(row.Passphrase) > 0 {
			p, err := s.sealer.Open(row.Passphrase, secretAD(row.ID, "passphrase"))
			if err != nil {
				return r, fmt.Errorf("credential %d passphrase: %w", row.ID, err)
			}
			if pass, err = s.sealer.Seal(p, secretAD(row.ID, "passphrase")); err != nil {
				return r, err
			}
		}
		if err := s.q.CredentialReseal(ctx, db.CredentialResealParams{ID: row.ID, Secret: sealed, Passphrase: pass,
			KeyID: s.sealer.CurrentKeyID()}); err != nil {
			return r, wrap(err, "credential")
		}
		r.Resealed++
	}
	return r, nil
}

func credentialFromRow(r db.Credential) testum.Credential {
	return testum.Credential{
		ID: r.ID, Name: deref(r.Name), Kind: testum.AuthMethod(r.Kind), HasPassphrase: len(r.Passphrase) > 0,
		PublicKey: deref(r.PublicKey), Fingerprint: deref(r.Fingerprint), KeyID: r.KeyID,
		OwnerPlatform: r.OwnerPlatform, CreatedAt: r.CreatedAt,
	}
}
