package store

import (
	"context"
	"time"

	"github.com/testum/testum/libs/db"
)

// SSHKey is a public key to deploy.
type SSHKey struct {
	ID          int64
	Name        string
	PublicKey   string
	Fingerprint string
	CreatedBy   string
	CreatedAt   time.Time
}

func sshKeyOf(r db.SshKey) SSHKey {
	return SSHKey{ID: r.ID, Name: r.Name, PublicKey: r.PublicKey, Fingerprint: r.Fingerprint, CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt}
}

// SSHKeyCreate stores a public key; a duplicate key or name is a conflict.
func (s *Store) SSHKeyCreate(ctx context.Context, name, publicKey, fingerprint, by string) (SSHKey, error) {
	r, err := s.q.SSHKeyCreate(ctx, db.SSHKeyCreateParams{Name: name, PublicKey: publicKey, Fingerprint: fingerprint, CreatedBy: by})
	if err != nil {
		return SSHKey{}, wrap(err, "key "+name+" (or the same key under another name)")
	}
	return sshKeyOf(r), nil
}

// SSHKeyList pages through the keys.
func (s *Store) SSHKeyList(ctx context.Context, limit, offset int) ([]SSHKey, int, error) {
	page := func(limit, offset int) ([]db.SSHKeyListRow, error) {
		return s.q.SSHKeyList(ctx, db.SSHKeyListParams{Lim: int32(limit), Off: int32(offset)})
	}
	rows, total, err := paged(page, limit, offset, func(r db.SSHKeyListRow) int64 { return r.Total })
	if err != nil {
		return nil, 0, wrap(err, "keys")
	}
	out := make([]SSHKey, len(rows))
	for i, r := range rows {
		out[i] = sshKeyOf(r.SshKey)
	}
	return out, int(total), nil
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
func (s *Store) SSHKeyDelete(ctx context.Context, id int64) (SSHKey, error) {
	r, err := s.q.SSHKeyDelete(ctx, id)
	if err != nil {
		return SSHKey{}, wrap(err, "key")
	}
	return sshKeyOf(r), nil
}
