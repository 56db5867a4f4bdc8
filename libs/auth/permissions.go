// Package auth owns who may do what: roles, the one permission table every
// route consults, sessions and tokens.
package auth

import "slices"

// Role is a user's role; each includes the rights of the ones below it.
type Role string

// The roles, from the fewest rights to the most.
const (
	RoleAdmin         Role = "admin"          // run commands; read platforms and runs
	RoleExtendedAdmin Role = "extended_admin" // also manage platforms, credentials, keys, host keys; cancel any run; read the audit log
	RoleSuperAdmin    Role = "super_admin"    // also manage users and sessions
)

// Rank orders roles; 0 for an unknown role.
func (r Role) Rank() int {
	switch r {
	case RoleAdmin:
		return 1
	case RoleExtendedAdmin:
		return 2
	case RoleSuperAdmin:
		return 3
	}
	return 0
}

// Valid reports whether r is a role.
func (r Role) Valid() bool { return r.Rank() > 0 }

// Action names what a route does; the permission table maps each to the
// least role allowed to do it.
type Action string

// The actions of the permission table.
const (
	ActionHealthRead       Action = "health.read"
	ActionLogin            Action = "auth.login"
	ActionConsoleRead      Action = "console.read"
	ActionSelf             Action = "auth.self"
	ActionUserManage       Action = "user.manage"
	ActionSessionManage    Action = "session.manage"
	ActionAuditRead        Action = "audit.read"
	ActionPlatformRead     Action = "platform.read"
	ActionPlatformCreate   Action = "platform.create"
	ActionPlatformRun      Action = "platform.run"
	ActionPlatformUpdate   Action = "platform.update"
	ActionPlatformDelete   Action = "platform.delete"
	ActionPlatformHostKey  Action = "platform.host_key"
	ActionCredentialRead   Action = "credential.read"
	ActionCredentialManage Action = "credential.manage"
	ActionKeyRead          Action = "key.read"
	ActionKeyManage        Action = "key.manage"
	ActionKeyDeploy        Action = "key.deploy"
	ActionRunRead          Action = "run.read"
	ActionRunCreate        Action = "run.create"
	ActionRunWatch         Action = "run.watch"
	ActionRunCancel        Action = "run.cancel"
	ActionRunCancelAny     Action = "run.cancel_any"
	ActionMetricsRead      Action = "metrics.read"
)

// Public actions need no session at all.
const Public Role = ""

// permissions is the one table: every route names an action, every action
// is here. A route whose action is missing is refused (and fails the route
// × role test).
var permissions = map[Action]Role{
	ActionHealthRead:  Public,
	ActionLogin:       Public,
	ActionConsoleRead: Public, // the console's static files; everything it shows comes from the API

	ActionSelf: RoleAdmin, // logout, me, rotate one's own master key

	ActionUserManage:    RoleSuperAdmin,
	ActionSessionManage: RoleSuperAdmin,
	ActionAuditRead:     RoleExtendedAdmin,

	ActionPlatformRead:     RoleAdmin,
	ActionPlatformCreate:   RoleExtendedAdmin,
	ActionPlatformRun:      RoleAdmin,
	ActionPlatformUpdate:   RoleExtendedAdmin,
	ActionPlatformDelete:   RoleExtendedAdmin,
	ActionPlatformHostKey:  RoleExtendedAdmin,
	ActionCredentialRead:   RoleExtendedAdmin,
	ActionCredentialManage: RoleExtendedAdmin,
	ActionKeyRead:          RoleAdmin,
	ActionKeyManage:        RoleExtendedAdmin,
	ActionKeyDeploy:        RoleExtendedAdmin,

	ActionRunRead:   RoleAdmin,
	ActionRunCreate: RoleAdmin,
	ActionRunWatch:  RoleAdmin,
	ActionRunCancel: RoleAdmin, // their own runs; run.cancel_any for the others'

	ActionRunCancelAny: RoleExtendedAdmin,

	// Prometheus scrapes: an extended_admin session, or the metrics token
	// (the gateway checks it for this action alone).
	ActionMetricsRead: RoleExtendedAdmin,
}

// Required returns the least role an action needs, and whether the action
// is known at all.
func Required(a Action) (Role, bool) {
	r, ok := permissions[a]
	return r, ok
}

// Allowed reports whether role may perform action. Unknown actions are
// refused.
func Allowed(role Role, a Action) bool {
	need, ok := permissions[a]
	if !ok {
		return false
	}
	if need == Public {
		return true
	}
	return role.Rank() >= need.Rank()
}

// ActionsOf lists the actions a role may perform, for the console to show
// only what it may do.
func ActionsOf(role Role) []Action {
	var out []Action
	for a := range permissions {
		if Allowed(role, a) {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// Actions lists every action of the table.
func Actions() []Action {
	out := make([]Action, 0, len(permissions))
	for a := range permissions {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}
