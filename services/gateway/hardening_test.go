package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// errCode reads the machine-readable code of an error answer.
func errCode(t *testing.T, r response) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	r.decode(t, &e)
	return e.Code
}

func createPlatform(t *testing.T, c *client, body map[string]any) int64 {
	t.Helper()
	var p struct {
		ID int64 `json:"id"`
	}
	c.must(http.StatusCreated, "POST", "/api/platforms/", body).decode(t, &p)
	return p.ID
}

// TestHostExpressionsHaveABoundedCost: the expression that cost about 66 ms
// per 23 bytes is refused with 400 hosts_too_complex, on every route that
// resolves targets, and a run that fits still goes through.
func TestHostExpressionsHaveABoundedCost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	c := g.client(t, nil)
	c.login(rootName, rootKey)
	createPlatform(t, c, map[string]any{"name": "x1", "host": "127.0.0.1", "port": 1, "username": "u",
		"auth_method": "password", "password": "pw"})

	churn := strings.Repeat("x[1-99999],!x[1-99999],", 200) + "x1" // 4.6 KB, 40 million names before
	long := strings.Repeat("x1,", 30000) + "x1"                    // 90 KB: over the length bound
	for _, tc := range []struct{ name, path, hosts string }{
		{"run churn", "/api/runs", churn},
		{"preview churn", "/api/runs/preview", churn},
		{"run long", "/api/runs", long},
	} {
		body := map[string]any{"command": "true", "targets": map[string]any{"hosts": tc.hosts}}
		if tc.path == "/api/runs/preview" {
			body = map[string]any{"hosts": tc.hosts}
		}
		r := c.do("POST", tc.path, body)
		if r.Status != http.StatusBadRequest || errCode(t, r) != "hosts_too_complex" {
			t.Fatalf("%s: %d %.300s, want 400 hosts_too_complex", tc.name, r.Status, r.Body)
		}
	}
	c.must(http.StatusCreated, "POST", "/api/runs", map[string]any{"command": "true",
		"targets": map[string]any{"hosts": "x[1-5],!x[2-5]"}})
}

// TestBodyLimits: ordinary JSON routes take 1 MiB, run creation more.
func TestBodyLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	c := g.client(t, nil)
	c.login(rootName, rootKey)
	pad := strings.Repeat("a", 1<<20)
	r := c.do("POST", "/api/platforms/", map[string]any{"name": "big", "host": "127.0.0.1", "username": "u",
		"password": "pw", "pad": pad})
	if r.Status != http.StatusRequestEntityTooLarge || errCode(t, r) != "body_too_large" {
		t.Fatalf("a 1 MiB platform body: %d %.200s", r.Status, r.Body)
	}
	// A run body of 2 MiB (a script) is read; its targets are what is wrong.
	r = c.do("POST", "/api/runs", map[string]any{"script": map[string]any{"body": pad + pad},
		"targets": map[string]any{"platform_ids": []int64{424242}}})
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "424242") {
		t.Fatalf("a 2 MiB run body: %d %.200s", r.Status, r.Body)
	}
}

// TestRequestFieldBounds: durations have upper bounds, invalid UTF-8 and
// NUL characters are 400s, not a silent U+FFFD or a 500.
func TestRequestFieldBounds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	c := g.client(t, nil)
	c.login(rootName, rootKey)
	id := createPlatform(t, c, map[string]any{"name": "b1", "host": "127.0.0.1", "port": 1, "username": "u",
		"auth_method": "password", "password": "pw"})
	targets := map[string]any{"platform_ids": []int64{id}}
	week := 7 * 24 * 3600
	for _, tc := range []struct {
		name string
		path string
		body any
		code string
	}{
		{"deadline over a week", "/api/runs", map[string]any{"command": "true", "targets": targets, "deadline": week + 1}, "invalid"},
		{"deadline overflowing", "/api/runs", map[string]any{"command": "true", "targets": targets, "deadline": int64(1) << 62}, "invalid"},
		{"timeout over a week", "/api/runs", map[string]any{"command": "true", "targets": targets, "timeout": week + 1}, "invalid"},
		{"run_command timeout", fmt.Sprintf("/api/platforms/%d/run_command", id), map[string]any{"command": "true", "timeout": int64(1) << 62}, "invalid"},
		{"invalid UTF-8", "/api/platforms/", "{\"name\":\"ok\xff\",\"host\":\"127.0.0.1\",\"username\":\"u\",\"password\":\"pw\"}", "invalid_utf8"},
		{"NUL in a login name", "/api/auth/login", `{"username":"ro\u0000ot","password":"x"}`, "nul_character"},
		{"NUL in a label", "/api/platforms/", `{"name":"n1","host":"127.0.0.1","username":"u","password":"pw","labels":{"a":"b\u0000"}}`, "nul_character"},
	} {
		r := c.do("POST", tc.path, tc.body)
		if r.Status != http.StatusBadRequest || errCode(t, r) != tc.code {
			t.Errorf("%s: %d %s, want 400 %s", tc.name, r.Status, r.Body, tc.code)
		}
	}
	// An escaped backslash before u0000 is text, not a NUL.
	c.must(http.StatusCreated, "POST", "/api/runs", `{"command":"echo \\u0000","targets":{"platform_ids":[`+fmt.Sprint(id)+`]},"deadline":604800}`)
}

// TestPasswordStaysWithItsHost: a password platform moved to another
// host, port or user needs its password again; a named credential follows.
func TestPasswordStaysWithItsHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	c := g.client(t, nil)
	c.login(rootName, rootKey)
	base := map[string]any{"name": "pw1", "host": "127.0.0.1", "port": 22, "username": "u", "auth_method": "password"}
	with := func(kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	id := createPlatform(t, c, with("password", "secret-pw"))
	path := fmt.Sprintf("/api/platforms/%d", id)
	for _, change := range [][]any{{"host", "127.0.0.2"}, {"port", 2222}, {"username", "other"}} {
		r := c.do("PUT", path, with(change...))
		if r.Status != http.StatusBadRequest || errCode(t, r) != "password_required" {
			t.Fatalf("changing %v without the password: %d %s", change[0], r.Status, r.Body)
		}
	}
	c.must(http.StatusOK, "PUT", path, with("labels", map[string]string{"role": "web"})) // same login: fine
	c.must(http.StatusOK, "PUT", path, with("host", "127.0.0.2", "password", "secret-pw"))

	var cr struct {
		ID int64 `json:"id"`
	}
	c.must(http.StatusCreated, "POST", "/api/credentials", map[string]any{"name": "shared", "kind": "password",
		"password": "shared-pw"}).decode(t, &cr)
	named := createPlatform(t, c, map[string]any{"name": "pw2", "host": "127.0.0.1", "username": "u",
		"auth_method": "password", "credential_id": cr.ID})
	c.must(http.StatusOK, "PUT", fmt.Sprintf("/api/platforms/%d", named), map[string]any{"name": "pw2",
		"host": "127.0.0.3", "username": "u", "auth_method": "password"})
}

// TestAuditLogIsAppendOnly: the database itself refuses to change or remove
// audit entries, and deleting a user (whose entries stay) still works.
func TestAuditLogIsAppendOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	c := g.client(t, nil)
	c.login(rootName, rootKey)
	u := c.createUser("leaver", "admin")
	g.client(t, nil).login(u.User.Username, u.MasterKey)
	c.must(http.StatusNoContent, "DELETE", fmt.Sprintf("/api/users/%d", u.User.ID), nil)

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
