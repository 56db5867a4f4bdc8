package auth_test

import (
	"slices"
	"testing"

	"github.com/testum/testum/libs/auth"
)

// leastRole is the permission table as the API documents it: the least
// role each action needs (auth.Public: none). A change to the table must
// change this too, on purpose.
var leastRole = map[auth.Action]auth.Role{
	"health.read":  auth.Public,
	"auth.login":   auth.Public,
	"console.read": auth.Public,
	"auth.self":    auth.RoleAdmin,

	"platform.read":  auth.RoleAdmin,
	"platform.run":   auth.RoleAdmin,
	"key.read":       auth.RoleAdmin,
	"run.read":       auth.RoleAdmin,
	"run.create":     auth.RoleAdmin,
	"run.watch":      auth.RoleAdmin,
	"run.cancel":     auth.RoleAdmin,
	"run.cancel_any": auth.RoleExtendedAdmin,

	"audit.read":        auth.RoleExtendedAdmin,
	"platform.create":   auth.RoleExtendedAdmin,
	"platform.update":   auth.RoleExtendedAdmin,
	"platform.delete":   auth.RoleExtendedAdmin,
	"platform.host_key": auth.RoleExtendedAdmin,
	"credential.read":   auth.RoleExtendedAdmin,
	"credential.manage": auth.RoleExtendedAdmin,
	"key.manage":        auth.RoleExtendedAdmin,
	"key.deploy":        auth.RoleExtendedAdmin,
	"metrics.read":      auth.RoleExtendedAdmin,

	"user.manage":    auth.RoleSuperAdmin,
	"session.manage": auth.RoleSuperAdmin,
}

// roles are the roles from the fewest rights to the most, then a role that
// does not exist and the empty role of an unauthenticated request.
var roles = []auth.Role{auth.RoleAdmin, auth.RoleExtendedAdmin, auth.RoleSuperAdmin, "root", ""}

func TestActionsAreTheTable(t *testing.T) {
	var want []auth.Action
	for a := range leastRole {
		want = append(want, a)
	}
	slices.Sort(want)
	if got := auth.Actions(); !slices.Equal(got, want) {
		t.Fatalf("Actions() = %q\nwant        %q", got, want)
	}
	for a, need := range leastRole {
		got, ok := auth.Required(a)
		if !ok || got != need {
			t.Errorf("Required(%s) = %q, %v; want %q", a, got, ok, need)
		}
	}
	if r, ok := auth.Required("run.delete"); ok {
		t.Errorf("Required of an unknown action = %q, true", r)
	}
}

// TestEveryRoleTimesEveryAction: each role may do exactly the actions whose
// least role ranks at or below its own; an unknown or empty role only the
// public ones; nobody an action missing from the table.
func TestEveryRoleTimesEveryAction(t *testing.T) {
	for _, role := range roles {
		var mayDo []auth.Action
		for a, need := range leastRole {
			want := need == auth.Public || (role.Valid() && role.Rank() >= need.Rank())
			if got := auth.Allowed(role, a); got != want {
				t.Errorf("Allowed(%q, %s) = %v, want %v", role, a, got, want)
			}
			if want {
				mayDo = append(mayDo, a)
			}
		}
		slices.Sort(mayDo)
		if got := auth.ActionsOf(role); !slices.Equal(got, mayDo) {
			t.Errorf("ActionsOf(%q) = %q\nwant %q", role, got, mayDo)
		}
		for _, a := range []auth.Action{"run.delete", "", "USER.MANAGE", "user.manage "} {
			if auth.Allowed(role, a) {
				t.Errorf("Allowed(%q, %q) for an action missing from the table", role, a)
			}
		}
	}
}

func TestRoles(t *testing.T) {
	cases := []struct {
		role  auth.Role
		rank  int
		valid bool
	}{
		{auth.RoleAdmin, 1, true},
		{auth.RoleExtendedAdmin, 2, true},
		{auth.RoleSuperAdmin, 3, true},
		{"admin", 1, true}, // the wire spelling is the constant's value
		{"Admin", 0, false},
		{"root", 0, false},
		{auth.Public, 0, false},
	}
	for _, c := range cases {
		if got := c.role.Rank(); got != c.rank {
			t.Errorf("Rank(%q) = %d, want %d", c.role, got, c.rank)
		}
		if got := c.role.Valid(); got != c.valid {
			t.Errorf("Valid(%q) = %v, want %v", c.role, got, c.valid)
		}
	}
	// Each role includes the rights of the ones below it.
	for i := 1; i < 3; i++ {
		lower, higher := auth.ActionsOf(roles[i-1]), auth.ActionsOf(roles[i])
		for _, a := range lower {
			if !slices.Contains(higher, a) {
				t.Errorf("%s may %s but %s may not", roles[i-1], a, roles[i])
			}
		}
		if len(higher) <= len(lower) {
			t.Errorf("%s has no right beyond %s's", roles[i], roles[i-1])
		}
	}
}
