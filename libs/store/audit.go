package store

import (
	"context"
	"encoding/json"

	"github.com/testum/testum/libs/db"
	"github.com/testum/testum/libs/testum"
)

// Audit appends an entry to the audit log in tx, so that the entry and the
// change it records commit or fail together. Details must hold no secret.
func (tx *Tx) Audit(ctx context.Context, e testum.AuditEntry) error {
	return auditInsert(ctx, tx.q, e)
}

// Audit appends an entry outside any other change (logins, refusals).
func (s *Store) Audit(ctx context.Context, e testum.AuditEntry) error {
	return auditInsert(ctx, s.q, e)
}

func auditInsert(ctx context.Context, q *db.Queries, e testum.AuditEntry) error {
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	details, err := json.Marshal(e.Details)
	if err != nil {
		return err
	}
	if e.Outcome == "" {
		e.Outcome = "ok"
	}
	_, err = q.AuditInsert(ctx, db.AuditInsertParams{
		ActorID: e.ActorID, Actor: e.Actor, Action: e.Action, Target: e.Target,
		Details: details, Ip: e.IP, Outcome: e.Outcome,
	})
	return wrap(err, "audit entry")
}
