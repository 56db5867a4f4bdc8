package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/testum/testum/libs/db"
	"github.com/testum/testum/libs/testum"
)

// Audit appends an entry to the audit log. Called on the store InTx hands
// out, the entry and the change it records commit or fail together; on the
// pool it stands alone (logins, refusals). Details must hold no secret.
func (s *Store) Audit(ctx context.Context, e testum.AuditEntry) error {
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	details, err := json.Marshal(e.Details)
	if err != nil {
		return err
	}
	if e.Outcome == "" {
		e.Outcome = testum.AuditOK
	}
	_, err = s.q.AuditInsert(ctx, db.AuditInsertParams{
		ActorID: e.ActorID, Actor: e.Actor, Action: e.Action, Target: e.Target,
		Details: details, Ip: e.IP, Outcome: string(e.Outcome),
	})
	return wrap(err, "audit entry")
}

// AuditFilter selects audit entries.
type AuditFilter struct {
	Actor, Action, Target string
	Since, Until          *time.Time
	BeforeID              *int64 // the page starts after this entry (keyset paging)
}

// AuditList pages through the audit log, newest first, and counts the
// entries that match.
func (s *Store) AuditList(ctx context.Context, f AuditFilter, limit, offset int) ([]testum.AuditEntry, int64, error) {
	page := func(before *int64) func(limit, offset int) ([]db.AuditListRow, error) {
		return func(limit, offset int) ([]db.AuditListRow, error) {
			return s.q.AuditList(ctx, db.AuditListParams{Actor: f.Actor, Action: f.Action, Target: f.Target,
				Since: f.Since, Until: f.Until, BeforeID: before, Lim: int32(limit), Off: int32(offset)})
		}
	}
	totalOf := func(r db.AuditListRow) int64 { return r.Total }
	rows, total, err := paged(page(f.BeforeID), limit, offset, totalOf)
	if err == nil && len(rows) == 0 && f.BeforeID != nil {
		// Past the end of a keyset walk: the total is still the filter's.
		_, total, err = paged(page(nil), 1, 0, totalOf)
	}
	if err != nil {
		return nil, 0, wrap(err, "audit log")
	}
	out := make([]testum.AuditEntry, 0, len(rows))
	for _, row := range rows {
		r := row.AuditLog
		e := testum.AuditEntry{ID: r.ID, At: r.At, ActorID: r.ActorID, Actor: r.Actor, Action: r.Action,
			Target: r.Target, IP: r.Ip, Outcome: testum.AuditOutcome(r.Outcome)}
		_ = json.Unmarshal(r.Details, &e.Details)
		out = append(out, e)
	}
	return out, total, nil
}
