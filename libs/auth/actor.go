package auth

import "github.com/testum/testum/libs/testum"

// Actor is who asks for a change: a user making a request, the operator at
// the machine's console, or testum itself. Domain services record it in the
// audit log and check its role.
type Actor struct {
	UserID   int64 // 0 when no user acts (the console, testum itself)
	Username string
	Role     Role
	IP       string // the client's address; "" outside a request
}

// Entry is the audit entry of something the actor did, with outcome ok.
// details must hold no secret.
func (a Actor) Entry(action, target string, details map[string]any) testum.AuditEntry {
	e := testum.AuditEntry{Actor: a.Username, Action: action, Target: target, Details: details, IP: a.IP, Outcome: testum.AuditOK}
	if a.UserID != 0 {
		id := a.UserID
		e.ActorID = &id
	}
	return e
}
