package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

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

// PlatformCreate inserts a platform and its inline credential, together.
func (s *Store) PlatformCreate(ctx context.Context, np NewPlatform) (testum.Platform, error) {
	var out testum.Platform
	err := s.atomically(ctx, func(tx *Store) error {
		var err error
		out, err = tx.platformCreate(ctx, np)
		return err
	})
	return out, err
}

func (s *Store) platformCreate(ctx context.Context, np NewPlatform) (testum.Platform, error) {
	credID := np.CredentialID
	if np.Secret != nil {
		c, err := s.CredentialCreate(ctx, *np.Secret)
		if err != nil {
			return testum.Platform{}, err
		}
		credID = &c.ID
	}
	labels, err := json.Marshal(nonNilLabels(np.Labels))
	if err != nil {
		return testum.Platform{}, err
	}
	row, err := s.q.PlatformCreate(ctx, db.PlatformCreateParams{
		Name: np.Name, Host: np.Host, Port: int32(np.Port), Username: np.Username,
		AuthMethod: string(np.AuthMethod), CredentialID: credID, Labels: labels,
		JumpPlatformID: np.JumpPlatformID, HostKeyPolicy: optString(string(np.HostKeyPolicy)),
	})
	if err != nil {
		return testum.Platform{}, wrap(err, fmt.Sprintf("platform %q", np.Name))
	}
	if np.Secret != nil {
		if err := s.q.CredentialSetOwner(ctx, db.CredentialSetOwnerParams{ID: *credID, OwnerPlatform: &row.ID}); err != nil {
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

// PlatformForUpdate locks and returns a platform.
func (s *Store) PlatformForUpdate(ctx context.Context, id int64) (testum.Platform, error) {
	row, err := s.q.PlatformGetForUpdate(ctx, id)
	if err != nil {
		return testum.Platform{}, wrap(err, "platform")
	}
	return platformFromRow(row)
}

// PlatformsByIDs returns the platforms with those ids, in id order; missing
// ids are simply absent.
func (s *Store) PlatformsByIDs(ctx context.Context, ids []int64) ([]testum.Platform, error) {
	rows, err := s.q.PlatformsByIDs(ctx, ids)
	if err != nil {
		return nil, wrap(err, "platforms")
	}
	return platformsFromRows(rows)
}

// RunPlatforms returns the platforms of a run's hosts and of their jump
// hosts, in id order, in one query.
func (s *Store) RunPlatforms(ctx context.Context, run uuid.UUID) ([]testum.Platform, error) {
	rows, err := s.q.RunPlatforms(ctx, run)
	if err != nil {
		return nil, wrap(err, "run platforms")
	}
	return platformsFromRows(rows)
}

// PlatformList returns a page of platforms, by id, and the total count.
func (s *Store) PlatformList(ctx context.Context, limit, offset int) ([]testum.Platform, int, error) {
	page := func(limit, offset int) ([]db.PlatformListRow, error) {
		return s.q.PlatformList(ctx, db.PlatformListParams{Lim: int32(limit), Off: int32(offset)})
	}
	rows, total, err := paged(page, limit, offset, func(r db.PlatformListRow) int64 { return r.Total })
	if err != nil {
		return nil, 0, wrap(err, "platforms")
	}
	ps := make([]db.Platform, len(rows))
	for i, r := range rows {
		ps[i] = r.Platform
	}
	out, err := platformsFromRows(ps)
	return out, int(total), err
}

// PlatformFilter selects platforms for a list.
type PlatformFilter struct {
	Labels map[string]string // every pair must match
	Name   string            // substring, case-insensitive
	State  testum.PlatformState
}

// PlatformSearch pages through platforms matching f, by name, and counts
// those that match.
func (s *Store) PlatformSearch(ctx context.Context, f PlatformFilter, limit, offset int) ([]testum.Platform, int, error) {
	ps, total, err := s.platformSearch(ctx, f, limit, offset)
	return ps, int(total), err
}

// PlatformsMatching returns up to limit platforms whose labels include
// selector, by name.
func (s *Store) PlatformsMatching(ctx context.Context, selector map[string]string, limit int) ([]testum.Platform, error) {
	ps, _, err := s.platformSearch(ctx, PlatformFilter{Labels: selector}, limit, 0)
	return ps, err
}

func (s *Store) platformSearch(ctx context.Context, f PlatformFilter, limit, offset int) ([]testum.Platform, int64, error) {
	sel, err := json.Marshal(nonNilLabels(f.Labels))
	if err != nil {
		return nil, 0, err
	}
	page := func(limit, offset int) ([]db.PlatformSearchRow, error) {
		return s.q.PlatformSearch(ctx, db.PlatformSearchParams{Selector: sel, Name: f.Name, State: string(f.State),
			Lim: int32(limit), Off: int32(offset)})
	}
	rows, total, err := paged(page, limit, offset, func(r db.PlatformSearchRow) int64 { return r.Total })
	if err != nil {
		return nil, 0, wrap(err, "platforms")
	}
	ps := make([]db.Platform, len(rows))
	for i, r := range rows {
		ps[i] = r.Platform
	}
	out, err := platformsFromRows(ps)
	return out, total, err
}

// PlatformNames maps every platform name to its id.
func (s *Store) PlatformNames(ctx context.Context) (map[string]int64, []string, error) {
	rows, err := s.q.PlatformNames(ctx)
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

// PlatformUpdate replaces a platform's settings. A new inline secret
// replaces the old inline one, which is deleted.
func (s *Store) PlatformUpdate(ctx context.Context, id int64, np NewPlatform) (testum.Platform, error) {
	var out testum.Platform
	err := s.atomically(ctx, func(tx *Store) error {
		var err error
		out, err = tx.platformUpdate(ctx, id, np)
		return err
	})
	return out, err
}

func (s *Store) platformUpdate(ctx context.Context, id int64, np NewPlatform) (testum.Platform, error) {
	old, err := s.PlatformForUpdate(ctx, id)
	if err != nil {
		return testum.Platform{}, err
	}
	credID := np.CredentialID
	if np.Secret != nil {
		c, err := s.CredentialCreate(ctx, *np.Secret)
		if err != nil {
			return testum.Platform{}, err
		}
		if err := s.q.CredentialSetOwner(ctx, db.CredentialSetOwnerParams{ID: c.ID, OwnerPlatform: &id}); err != nil {
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
	row, err := s.q.PlatformUpdate(ctx, db.PlatformUpdateParams{ID: id,
		Name: np.Name, Host: np.Host, Port: int32(np.Port), Username: np.Username,
		AuthMethod: string(np.AuthMethod), CredentialID: credID, Labels: labels,
		JumpPlatformID: np.JumpPlatformID, HostKeyPolicy: optString(string(np.HostKeyPolicy)),
	})
	if err != nil {
		return testum.Platform{}, wrap(err, fmt.Sprintf("platform %q", np.Name))
	}
	if old.CredentialID != nil && (credID == nil || *credID != *old.CredentialID) {
		if err := s.q.CredentialDeleteOwned(ctx, db.CredentialDeleteOwnedParams{ID: *old.CredentialID, OwnerPlatform: &id}); err != nil {
			return testum.Platform{}, wrap(err, "credential")
		}
	}
	if old.Host != np.Host || old.Port != np.Port {
		// Another address is another host: its key is learned anew.
		if err := s.q.PlatformForgetHostKey(ctx, id); err != nil {
			return testum.Platform{}, wrap(err, "platform")
		}
		row.HostKey, row.HostKeyFingerprint = nil, nil
	}
	return platformFromRow(row)
}

// PlatformDelete deletes a platform unless a queued or running run uses it
// or another platform jumps through it. Its inline credential goes with it.
func (s *Store) PlatformDelete(ctx context.Context, id int64) (testum.Platform, error) {
	var out testum.Platform
	err := s.atomically(ctx, func(tx *Store) error {
		var err error
		out, err = tx.platformDelete(ctx, id)
		return err
	})
	return out, err
}

func (s *Store) platformDelete(ctx context.Context, id int64) (testum.Platform, error) {
	p, err := s.PlatformForUpdate(ctx, id)
	if err != nil {
		return p, err
	}
	busy, err := s.q.PlatformInActiveRun(ctx, &id)
	if err != nil {
		return p, wrap(err, "platform")
	}
	if busy {
		return p, testum.Conflict("platform %q is used by a run that has not finished", p.Name)
	}
	n, err := s.q.PlatformJumpedThrough(ctx, &id)
	if err != nil {
		return p, wrap(err, "platform")
	}
	if n > 0 {
		return p, testum.Conflict("platform %q is the jump host of %d other platform(s)", p.Name, n)
	}
	if _, err := s.q.PlatformDelete(ctx, id); err != nil {
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

// PlatformAcceptHostKey pins the offered key if its fingerprint is still
// fingerprint.
func (s *Store) PlatformAcceptHostKey(ctx context.Context, id int64, fingerprint string) (bool, error) {
	n, err := s.q.PlatformAcceptHostKey(ctx, db.PlatformAcceptHostKeyParams{ID: id, Fingerprint: &fingerprint})
	return n == 1, wrap(err, "platform")
}

// PlatformRecordContact records how the last contact with a platform went.
func (s *Store) PlatformRecordContact(ctx context.Context, id int64, state testum.PlatformState, detail string) error {
	return wrap(s.q.PlatformRecordContact(ctx, db.PlatformRecordContactParams{ID: id, State: string(state), Detail: detail}), "platform contact")
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
		OfferedAt: r.OfferedAt, State: testum.PlatformState(r.State), StateDetail: r.StateDetail, LastContactAt: r.LastContactAt,
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
