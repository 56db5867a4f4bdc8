package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/testum/testum/libs/db"
	"github.com/testum/testum/libs/testum"
)

// PlatformFilter selects platforms for a list.
type PlatformFilter struct {
	Labels map[string]string // every pair must match
	Name   string            // substring, case-insensitive
	State  string
}

// PlatformSearch pages through platforms matching f, by name.
func (s *Store) PlatformSearch(ctx context.Context, f PlatformFilter, limit, offset int) ([]testum.Platform, int, error) {
	sel, err := json.Marshal(nonNilLabels(f.Labels))
	if err != nil {
		return nil, 0, err
	}
	rows, err := s.q.PlatformSearch(ctx, db.PlatformSearchParams{Selector: sel, Name: f.Name, State: f.State,
		Lim: int32(limit), Off: int32(offset)})
	if err != nil {
		return nil, 0, wrap(err, "platforms")
	}
	n, err := s.q.PlatformSearchCount(ctx, db.PlatformSearchCountParams{Selector: sel, Name: f.Name, State: f.State})
	if err != nil {
		return nil, 0, wrap(err, "platforms")
	}
	ps, err := platformsFromRows(rows)
	return ps, int(n), err
}

// PlatformsMatching returns every platform whose labels include selector.
func (tx *Tx) PlatformsMatching(ctx context.Context, selector map[string]string, limit int) ([]testum.Platform, error) {
	sel, err := json.Marshal(nonNilLabels(selector))
	if err != nil {
		return nil, err
	}
	rows, err := tx.q.PlatformSearch(ctx, db.PlatformSearchParams{Selector: sel, Lim: int32(limit)})
	if err != nil {
		return nil, wrap(err, "platforms")
	}
	return platformsFromRows(rows)
}

// PlatformNames maps every platform name to its id.
func (tx *Tx) PlatformNames(ctx context.Context) (map[string]int64, []string, error) {
	rows, err := tx.q.PlatformNames(ctx)
	if err != nil {
		return nil, nil, wrap(err, "platforms")
	}
	ids := make(map[string]int64, len(rows))
	names := make([]string, 0, len(rows))
	for _, r := range rows {
		ids[r.Name] = r.ID
		names = append(names, r.Name)
	}
	return ids, names, nil
}

// PlatformForUpdate locks and returns a platform.
func (tx *Tx) PlatformForUpdate(ctx context.Context, id int64) (testum.Platform, error) {
	row, err := tx.q.PlatformGetForUpdate(ctx, id)
	if err != nil {
		return testum.Platform{}, wrap(err, "platform")
	}
	return platformFromRow(row)
}

// PlatformUpdate replaces a platform's settings. A new inline secret
// replaces the old inline one, which is deleted.
func (tx *Tx) PlatformUpdate(ctx context.Context, id int64, np NewPlatform) (testum.Platform, error) {
	old, err := tx.PlatformForUpdate(ctx, id)
	if err != nil {
		return testum.Platform{}, err
	}
	credID := np.CredentialID
	if np.Secret != nil {
		c, err := tx.CredentialCreate(ctx, *np.Secret)
		if err != nil {
			return testum.Platform{}, err
		}
		if err := tx.q.CredentialSetOwner(ctx, db.CredentialSetOwnerParams{ID: c.ID, OwnerPlatform: &id}); err != nil {
			return testum.Platform{}, wrap(err, "credential")
		}
		credID = &c.ID
	} else if credID == nil {
		credID = old.CredentialID // the secret is kept
	}
	labels, err := json.Marshal(nonNilLabels(np.Labels))
	if err != nil {
		return testum.Platform{}, err
	}
	row, err := tx.q.PlatformUpdate(ctx, db.PlatformUpdateParams{ID: id,
		Name: np.Name, Host: np.Host, Port: int32(np.Port), Username: np.Username,
		AuthMethod: string(np.AuthMethod), CredentialID: credID, Labels: labels,
		JumpPlatformID: np.JumpPlatformID, HostKeyPolicy: optString(string(np.HostKeyPolicy)),
	})
	if err != nil {
		return testum.Platform{}, wrap(err, fmt.Sprintf("platform %q", np.Name))
	}
	if old.CredentialID != nil && (credID == nil || *credID != *old.CredentialID) {
		if err := tx.q.CredentialDeleteOwned(ctx, db.CredentialDeleteOwnedParams{ID: *old.CredentialID, OwnerPlatform: &id}); err != nil {
			return testum.Platform{}, wrap(err, "credential")
		}
	}
	if old.Host != np.Host || old.Port != np.Port {
		// Another address is another host: its key is learned anew.
		if err := tx.q.PlatformForgetHostKey(ctx, id); err != nil {
			return testum.Platform{}, wrap(err, "platform")
		}
		row.HostKey, row.HostKeyFingerprint = nil, nil
	}
	return platformFromRow(row)
}

// PlatformDelete deletes a platform unless a queued or running run uses it
// or another platform jumps through it. Its inline credential goes with it.
func (tx *Tx) PlatformDelete(ctx context.Context, id int64) (testum.Platform, error) {
	p, err := tx.PlatformForUpdate(ctx, id)
	if err != nil {
		return p, err
	}
	busy, err := tx.q.PlatformInActiveRun(ctx, &id)
	if err != nil {
		return p, wrap(err, "platform")
	}
	if busy {
		return p, testum.Conflict("platform %q is used by a run that has not finished", p.Name)
	}
	n, err := tx.q.PlatformJumpedThrough(ctx, &id)
	if err != nil {
		return p, wrap(err, "platform")
	}
	if n > 0 {
		return p, testum.Conflict("platform %q is the jump host of %d other platform(s)", p.Name, n)
	}
	if _, err := tx.q.PlatformDelete(ctx, id); err != nil {
		return p, wrap(err, "platform")
	}
	return p, nil
}

// HostKeys is what is pinned for a platform and what its host now offers.
type HostKeys struct {
	Pinned, PinnedFingerprint   string
	Offered, OfferedFingerprint string
	OfferedAt                   *time.Time
}

// PlatformHostKeys returns the pinned and offered host keys.
func (s *Store) PlatformHostKeys(ctx context.Context, id int64) (HostKeys, error) {
	r, err := s.q.PlatformHostKeys(ctx, id)
	if err != nil {
		return HostKeys{}, wrap(err, "platform")
	}
	return HostKeys{Pinned: deref(r.HostKey), PinnedFingerprint: deref(r.HostKeyFingerprint), Offered: deref(r.OfferedHostKey),
		OfferedFingerprint: deref(r.OfferedHostKeyFingerprint), OfferedAt: r.OfferedAt}, nil
}

// PlatformAcceptHostKey pins the offered key if its fingerprint is still
// fingerprint.
func (tx *Tx) PlatformAcceptHostKey(ctx context.Context, id int64, fingerprint string) (bool, error) {
	n, err := tx.q.PlatformAcceptHostKey(ctx, db.PlatformAcceptHostKeyParams{ID: id, Fingerprint: &fingerprint})
	return n == 1, wrap(err, "platform")
}

// CredentialList pages through the named (reusable) credentials.
func (s *Store) CredentialList(ctx context.Context, limit, offset int) ([]testum.Credential, int, error) {
	rows, err := s.q.CredentialList(ctx, db.CredentialListParams{Lim: int32(limit), Off: int32(offset)})
	if err != nil {
		return nil, 0, wrap(err, "credentials")
	}
	n, err := s.q.CredentialCount(ctx)
	if err != nil {
		return nil, 0, wrap(err, "credentials")
	}
	out := make([]testum.Credential, len(rows))
	for i, r := range rows {
		out[i] = credentialFromRow(r)
	}
	return out, int(n), nil
}

// CredentialDelete deletes a named credential no platform uses.
func (tx *Tx) CredentialDelete(ctx context.Context, id int64) (testum.Credential, error) {
	c, err := tx.Credential(ctx, id)
	if err != nil {
		return c, err
	}
	if c.Name == "" {
		return c, testum.NotFound("credential %d not found", id)
	}
	n, err := tx.q.CredentialInUse(ctx, &id)
	if err != nil {
		return c, wrap(err, "credential")
	}
	if n > 0 {
		return c, testum.Conflict("credential %q is used by %d platform(s)", c.Name, n)
	}
	_, err = tx.q.CredentialDelete(ctx, id)
	return c, wrap(err, "credential")
}

// Rotation is what CredentialsRotate did.
type Rotation struct{ Checked, Resealed int }

// CredentialsRotate re-encrypts, with the newest key, every secret sealed
// with another key or in the legacy Fernet format, in one transaction.
func (tx *Tx) CredentialsRotate(ctx context.Context, needs func(ct []byte) bool) (Rotation, error) {
	var r Rotation
	rows, err := tx.q.CredentialsAll(ctx)
	if err != nil {
		return r, wrap(err, "credentials")
	}
	for _, row := range rows {
		r.Checked++
		if !needs(row.Secret) && (len(row.Passphrase) == 0 || !needs(row.Passphrase)) {
			continue
		}
		secret, err := tx.s.sealer.Open(row.Secret, secretAD(row.ID, "secret"))
		if err != nil {
			return r, fmt.Errorf("credential %d: %w", row.ID, err)
		}
		sealed, err := tx.s.sealer.Seal(secret, secretAD(row.ID, "secret"))
		if err != nil {
			return r, err
		}
		var pass []byte
		if len(row.Passphrase) > 0 {
			p, err := tx.s.sealer.Open(row.Passphrase, secretAD(row.ID, "passphrase"))
			if err != nil {
				return r, fmt.Errorf("credential %d passphrase: %w", row.ID, err)
			}
			if pass, err = tx.s.sealer.Seal(p, secretAD(row.ID, "passphrase")); err != nil {
				return r, err
			}
		}
		if err := tx.q.CredentialReseal(ctx, db.CredentialResealParams{ID: row.ID, Secret: sealed, Passphrase: pass,
			KeyID: tx.s.sealer.CurrentKeyID()}); err != nil {
			return r, wrap(err, "credential")
		}
		r.Resealed++
	}
	return r, nil
}

// SSHKey is a public key to deploy.
type SSHKey struct {
	ID          int64     `json:"id"`
	Name        string    `json:"name"`
	PublicKey   string    `json:"public_key"`
	Fingerprint string    `json:"fingerprint"`
	CreatedBy   string    `json:"created_by"`
	CreatedAt   time.Time `json:"created_at"`
}

func sshKeyOf(r db.SshKey) SSHKey {
	return SSHKey{ID: r.ID, Name: r.Name, PublicKey: r.PublicKey, Fingerprint: r.Fingerprint, CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt}
}

// SSHKeyCreate stores a public key; a duplicate key or name is a conflict.
func (tx *Tx) SSHKeyCreate(ctx context.Context, name, publicKey, fingerprint, by string) (SSHKey, error) {
	r, err := tx.q.SSHKeyCreate(ctx, db.SSHKeyCreateParams{Name: name, PublicKey: publicKey, Fingerprint: fingerprint, CreatedBy: by})
	if err != nil {
		return SSHKey{}, wrap(err, "key "+name+" (or the same key under another name)")
	}
	return sshKeyOf(r), nil
}

// SSHKeyList pages through the keys.
func (s *Store) SSHKeyList(ctx context.Context, limit, offset int) ([]SSHKey, int, error) {
	rows, err := s.q.SSHKeyList(ctx, db.SSHKeyListParams{Lim: int32(limit), Off: int32(offset)})
	if err != nil {
		return nil, 0, wrap(err, "keys")
	}
	n, err := s.q.SSHKeyCount(ctx)
	if err != nil {
		return nil, 0, wrap(err, "keys")
	}
	out := make([]SSHKey, len(rows))
	for i, r := range rows {
		out[i] = sshKeyOf(r)
	}
	return out, int(n), nil
}

// SSHKeysByIDs returns the keys with these ids.
func (s *Store) SSHKeysByIDs(ctx context.Context, ids []int64) ([]SSHKey, error) {
	rows, err := s.q.SSHKeysByIDs(ctx, ids)
	if err != nil {
		return nil, wrap(err, "keys")
	}
	out := make([]SSHKey, len(rows))
	for i, r := range rows {
		out[i] = sshKeyOf(r)
	}
	return out, nil
}

// SSHKeyDelete deletes a key.
func (tx *Tx) SSHKeyDelete(ctx context.Context, id int64) (SSHKey, error) {
	r, err := tx.q.SSHKeyDelete(ctx, id)
	if err != nil {
		return SSHKey{}, wrap(err, "key")
	}
	return sshKeyOf(r), nil
}

// CredentialByName returns a named credential's public facts.
func (s *Store) CredentialByName(ctx context.Context, name string) (testum.Credential, error) {
	row, err := s.q.CredentialByName(ctx, &name)
	if err != nil {
		return testum.Credential{}, wrap(err, "credential "+name)
	}
	return credentialFromRow(row), nil
}
