package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/testum/testum/libs/db"
	"github.com/testum/testum/libs/testum"
)

// NewPlatform is what creating a platform needs. Exactly one of
// CredentialID or Secret is set.
type NewPlatform struct {
	Name           string
	Host           string
	Port           int
	Username       string
	AuthMethod     testum.AuthMethod
	CredentialID   *int64
	Secret         *NewSecret // an inline password or key, stored as the platform's own credential
	Labels         map[string]string
	JumpPlatformID *int64
	HostKeyPolicy  testum.HostKeyPolicy
}

// PlatformCreate inserts a platform (and its inline credential) in tx.
func (tx *Tx) PlatformCreate(ctx context.Context, np NewPlatform) (testum.Platform, error) {
	credID := np.CredentialID
	if np.Secret != nil {
		c, err := tx.CredentialCreate(ctx, *np.Secret)
		if err != nil {
			return testum.Platform{}, err
		}
		credID = &c.ID
	}
	labels, err := json.Marshal(nonNilLabels(np.Labels))
	if err != nil {
		return testum.Platform{}, err
	}
	row, err := tx.q.PlatformCreate(ctx, db.PlatformCreateParams{
		Name: np.Name, Host: np.Host, Port: int32(np.Port), Username: np.Username,
		AuthMethod: string(np.AuthMethod), CredentialID: credID, Labels: labels,
		JumpPlatformID: np.JumpPlatformID, HostKeyPolicy: optString(string(np.HostKeyPolicy)),
	})
	if err != nil {
		return testum.Platform{}, wrap(err, fmt.Sprintf("platform %q", np.Name))
	}
	if np.Secret != nil {
		if err := tx.q.CredentialSetOwner(ctx, db.CredentialSetOwnerParams{ID: *credID, OwnerPlatform: &row.ID}); err != nil {
			return testum.Platform{}, wrap(err, "credential")
		}
	}
	return platformFromRow(row)
}

// Platform returns one platform.
func (s *Store) Platform(ctx context.Context, id int64) (testum.Platform, error) {
	row, err := s.q.PlatformGet(ctx, id)
	if err != nil {
		return testum.Platform{}, wrap(err, fmt.Sprintf("platform %d", id))
	}
	return platformFromRow(row)
}

// PlatformsByIDs returns the platforms with those ids, in id order; missing
// ids are simply absent.
func (tx *Tx) PlatformsByIDs(ctx context.Context, ids []int64) ([]testum.Platform, error) {
	rows, err := tx.q.PlatformsByIDs(ctx, ids)
	if err != nil {
		return nil, wrap(err, "platforms")
	}
	return platformsFromRows(rows)
}

// PlatformList returns a page of platforms and the total count.
func (s *Store) PlatformList(ctx context.Context, limit, offset int) ([]testum.Platform, int, error) {
	rows, err := s.q.PlatformList(ctx, db.PlatformListParams{Lim: int32(limit), Off: int32(offset)})
	if err != nil {
		return nil, 0, wrap(err, "platforms")
	}
	n, err := s.q.PlatformCount(ctx)
	if err != nil {
		return nil, 0, wrap(err, "platforms")
	}
	ps, err := platformsFromRows(rows)
	return ps, int(n), err
}

// PlatformPinHostKey pins key as the platform's host key if none is pinned
// yet. It reports whether this call pinned it.
func (s *Store) PlatformPinHostKey(ctx context.Context, id int64, key, fingerprint string) (bool, error) {
	n, err := s.q.PlatformPinHostKey(ctx, db.PlatformPinHostKeyParams{ID: id, HostKey: &key, Fingerprint: &fingerprint})
	if err != nil {
		return false, wrap(err, "platform host key")
	}
	return n == 1, nil
}

// PlatformOfferHostKey records a changed key the host presented, for an
// extended_admin to accept or not.
func (s *Store) PlatformOfferHostKey(ctx context.Context, id int64, key, fingerprint string) error {
	return wrap(s.q.PlatformOfferHostKey(ctx, db.PlatformOfferHostKeyParams{ID: id, HostKey: &key, Fingerprint: &fingerprint}), "platform host key")
}

// PlatformRecordContact records how the last contact with a platform went.
func (s *Store) PlatformRecordContact(ctx context.Context, id int64, state, detail string) error {
	return wrap(s.q.PlatformRecordContact(ctx, db.PlatformRecordContactParams{ID: id, State: state, Detail: detail}), "platform contact")
}

func platformsFromRows(rows []db.Platform) ([]testum.Platform, error) {
	out := make([]testum.Platform, 0, len(rows))
	for _, r := range rows {
		p, err := platformFromRow(r)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func platformFromRow(r db.Platform) (testum.Platform, error) {
	p := testum.Platform{
		ID: r.ID, Name: r.Name, Host: r.Host, Port: int(r.Port), Username: r.Username,
		AuthMethod: testum.AuthMethod(r.AuthMethod), CredentialID: r.CredentialID,
		JumpPlatformID: r.JumpPlatformID, HostKeyPolicy: testum.HostKeyPolicy(deref(r.HostKeyPolicy)),
		HostKey: deref(r.HostKey), HostKeyFingerprint: deref(r.HostKeyFingerprint),
		OfferedHostKey: deref(r.OfferedHostKey), OfferedFingerprint: deref(r.OfferedHostKeyFingerprint),
		OfferedAt: r.OfferedAt, State: r.State, StateDetail: r.StateDetail, LastContactAt: r.LastContactAt,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
	if err := json.Unmarshal(r.Labels, &p.Labels); err != nil {
		return p, fmt.Errorf("platform %d labels: %w", r.ID, err)
	}
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	return p, nil
}

func nonNilLabels(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
