package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	apiclient "github.com/testum/testum/libs/api/client"
)

// TestHostExpressionsHaveABoundedCost: the expression that cost about 66 ms
// per 23 bytes is refused with 400 hosts_too_complex, on every route that
// resolves targets, and a run that fits still goes through.
func TestHostExpressionsHaveABoundedCost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	ctx := t.Context()
	c := g.as(t, apiclient.SuperAdmin)
	c.createPlatform(unreachable("x1"))

	churn := strings.Repeat("x[1-99999],!x[1-99999],", 200) + "x1" // 4.6 KB, 40 million names before
	long := strings.Repeat("x1,", 30000) + "x1"                    // 90 KB: over the length bound
	run := func(hosts string) reply {
		return got(c.RunCreateWithResponse(ctx, apiclient.RunRequest{Command: new("true"), Targets: apiclient.Targets{Hosts: &hosts}})).reply(t)
	}
	for _, tc := range []struct {
		name string
		r    reply
	}{
		{"run churn", run(churn)},
		{"preview churn", got(c.RunPreviewWithResponse(ctx, apiclient.Targets{Hosts: &churn})).reply(t)},
		{"run long", run(long)},
	} {
		if tc.r.Status != http.StatusBadRequest || tc.r.code() != apiclient.ErrorCodeHostsTooComplex {
			t.Fatalf("%s: %d %.300s, want 400 hosts_too_complex", tc.name, tc.r.Status, tc.r.Body)
		}
	}
	if r := run("x[1-5],!x[2-5]"); r.Status != http.StatusCreated {
		t.Fatalf("a run that fits: %d %.300s", r.Status, r.Body)
	}
}

// TestBodyLimits: ordinary JSON routes take 1 MiB, run creation more.
func TestBodyLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	ctx := t.Context()
	c := g.as(t, apiclient.SuperAdmin)
	pad := strings.Repeat("a", 1<<20)
	big, err := json.Marshal(map[string]any{"name": "big", "host": "127.0.0.1", "username": "u",
		"password": "pw", "pad": pad}) // a field the request type has not: the size is the point
	if err != nil {
		t.Fatal(err)
	}
	r := got(c.PlatformCreateWithBodyWithResponse(ctx, "application/json", bytes.NewReader(big))).want(t, http.StatusRequestEntityTooLarge)
	if r.JSON413.Code != apiclient.ErrorCodeBodyTooLarge {
		t.Fatalf("a 1 MiB platform body: %d %.200s", r.StatusCode(), r.Body)
	}
	// A run body of 2 MiB (a script) is read; its targets are what is wrong.
	rr := got(c.RunCreateWithResponse(ctx, apiclient.RunRequest{Script: &apiclient.Script{Body: pad + pad},
		Targets: apiclient.Targets{PlatformIds: &[]int64{424242}}})).want(t, http.StatusBadRequest)
	if !strings.Contains(string(rr.Body), "424242") {
		t.Fatalf("a 2 MiB run body: %d %.200s", rr.StatusCode(), rr.Body)
	}
}

// TestRequestFieldBounds: durations have upper bounds, invalid UTF-8 and
// NUL characters are 400s, not a silent U+FFFD or a 500.
func TestRequestFieldBounds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	ctx := t.Context()
	c := g.as(t, apiclient.SuperAdmin)
	id := c.createPlatform(unreachable("b1"))
	targets := apiclient.Targets{PlatformIds: &[]int64{id}}
	week := 7 * 24 * 3600
	run := func(r apiclient.RunRequest) reply {
		r.Command, r.Targets = new("true"), targets
		return got(c.RunCreateWithResponse(ctx, r)).reply(t)
	}
	nul := apiclient.PlatformRequest{Name: "n1", Host: "127.0.0.1", Username: "u", Password: new("pw"), Labels: labels(t, map[string]string{"a": "b\x00"})}
	for _, tc := range []struct {
		name string
		r    reply
		code apiclient.ErrorCode
	}{
		{"deadline over a week", run(apiclient.RunRequest{Deadline: new(week + 1)}), apiclient.ErrorCodeInvalid},
		{"deadline overflowing", run(apiclient.RunRequest{Deadline: new(1 << 62)}), apiclient.ErrorCodeInvalid},
		{"timeout over a week", run(apiclient.RunRequest{Timeout: new(week + 1)}), apiclient.ErrorCodeInvalid},
		{"run_command timeout", got(c.PlatformRunCommandWithResponse(ctx, id, apiclient.RunCommandRequest{Command: "true", Timeout: new(1 << 62)})).reply(t), apiclient.ErrorCodeInvalid},
		// Sent as bytes: the JSON encoder would make the invalid byte a U+FFFD.
		{"invalid UTF-8", got(c.PlatformCreateWithBodyWithResponse(ctx, "application/json",
			strings.NewReader("{\"name\":\"ok\xff\",\"host\":\"127.0.0.1\",\"username\":\"u\",\"password\":\"pw\"}"))).reply(t), apiclient.ErrorCodeInvalidUtf8},
		{"NUL in a login name", got(c.AuthLoginWithResponse(ctx, apiclient.LoginRequest{Username: "ro\x00ot", Password: "x"})).reply(t), apiclient.ErrorCodeNulCharacter},
		{"NUL in a label", got(c.PlatformCreateWithResponse(ctx, nul)).reply(t), apiclient.ErrorCodeNulCharacter},
	} {
		if tc.r.Status != http.StatusBadRequest || tc.r.code() != tc.code {
			t.Errorf("%s: %d %s, want 400 %s", tc.name, tc.r.Status, tc.r.Body, tc.code)
		}
	}
	// An escaped backslash before u0000 is text, not a NUL.
	if r := run(apiclient.RunRequest{Command: new(`echo \u0000`), Deadline: new(604800)}); r.Status != http.StatusCreated {
		t.Fatalf("an escaped backslash: %d %s", r.Status, r.Body)
	}
}

// TestPasswordStaysWithItsHost: a password platform moved to another
// host, port or user needs its password again; a named credential follows.
func TestPasswordStaysWithItsHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	ctx := t.Context()
	c := g.as(t, apiclient.SuperAdmin)
	with := func(change func(*apiclient.PlatformRequest)) apiclient.PlatformRequest {
		p := apiclient.PlatformRequest{Name: "pw1", Host: "127.0.0.1", Port: new(22), Username: "u", AuthMethod: new(string(apiclient.Password))}
		change(&p)
		return p
	}
	id := c.createPlatform(with(func(p *apiclient.PlatformRequest) { p.Password = new("secret-pw") }))
	for _, change := range []struct {
		what string
		to   func(*apiclient.PlatformRequest)
	}{
		{"host", func(p *apiclient.PlatformRequest) { p.Host = "127.0.0.2" }},
		{"port", func(p *apiclient.PlatformRequest) { p.Port = new(2222) }},
		{"username", func(p *apiclient.PlatformRequest) { p.Username = "other" }},
	} {
		r := got(c.PlatformUpdateWithResponse(ctx, id, with(change.to))).reply(t)
		if r.Status != http.StatusBadRequest || r.code() != apiclient.ErrorCodePasswordRequired {
			t.Fatalf("changing %v without the password: %d %s", change.what, r.Status, r.Body)
		}
	}
	got(c.PlatformUpdateWithResponse(ctx, id, with(func(p *apiclient.PlatformRequest) {
		p.Labels = labels(t, map[string]string{"role": "web"}) // same login: fine
	}))).want(t, http.StatusOK)
	got(c.PlatformUpdateWithResponse(ctx, id, with(func(p *apiclient.PlatformRequest) {
		p.Host, p.Password = "127.0.0.2", new("secret-pw")
	}))).want(t, http.StatusOK)

	cr := got(c.CredentialCreateWithResponse(ctx, apiclient.CredentialRequest{Name: "shared", Kind: new(string(apiclient.Password)),
		Password: new("shared-pw")})).want(t, http.StatusCreated).JSON201
	named := c.createPlatform(apiclient.PlatformRequest{Name: "pw2", Host: "127.0.0.1", Username: "u",
		AuthMethod: new(string(apiclient.Password)), CredentialId: &cr.Id})
	got(c.PlatformUpdateWithResponse(ctx, named, apiclient.PlatformRequest{Name: "pw2", Host: "127.0.0.3", Username: "u",
		AuthMethod: new(string(apiclient.Password))})).want(t, http.StatusOK)
}

// TestAuditLogIsAppendOnly: the database itself refuses to change or remove
// audit entries, and deleting a user (whose entries stay) still works.
func TestAuditLogIsAppendOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	c := g.as(t, apiclient.SuperAdmin)
	u := c.createUser("leaver", apiclient.Admin)
	g.anon(t).login(u.User.Username, u.MasterKey)
	got(c.UserDeleteWithResponse(t.Context(), u.User.Id)).want(t, http.StatusNoContent)

	ctx := context.Background()
	pool := g.st.Pool()
	count := func() int {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM audit_log").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count()
	if before == 0 {
		t.Fatal("no audit entries to protect")
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM audit_log WHERE actor = $1", u.User.Username).Scan(&n); err != nil || n == 0 {
		t.Fatalf("the deleted user's entries: %d, %v", n, err)
	}
	for _, q := range []string{
		"UPDATE audit_log SET actor = 'someone else'",
		"UPDATE audit_log SET details = '{}' WHERE action = 'user.delete'",
		"DELETE FROM audit_log",
		"DELETE FROM audit_log WHERE actor = '" + u.User.Username + "'",
		"TRUNCATE audit_log",
	} {
		if _, err := pool.Exec(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want it refused", q, err)
		}
	}
	if after := count(); after != before {
		t.Fatalf("audit entries: %d before, %d after", before, after)
	}
}
