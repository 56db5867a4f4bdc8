package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/api"
	"github.com/testum/testum/libs/secrets"
	"github.com/testum/testum/libs/testenv"
)

// runOn runs a command on platforms and returns the finished run.
func (s *server) runOn(t *testing.T, cmd string, ids ...int64) api.Run {
	t.Helper()
	return s.waitRun(t, s.startRun(t, map[string]any{"command": cmd, "timeout": 60, "targets": map[string]any{"platform_ids": ids}}))
}

func hostState(t *testing.T, r api.Run, i int) string {
	t.Helper()
	if len(r.Hosts) <= i {
		t.Fatalf("run has %d hosts", len(r.Hosts))
	}
	return r.Hosts[i].State
}

func genKey(t *testing.T, kind, pass string) ([]byte, ssh.PublicKey) {
	t.Helper()
	var priv any
	switch kind {
	case "ed25519":
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		priv = k
	case "ecdsa":
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		priv = k
	case "rsa":
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		priv = k
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if pass == "" {
		block, err = ssh.MarshalPrivateKey(priv, "")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(pass))
	}
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block), signer.PublicKey()
}

func TestPlatformManagement(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	pw := sshd.PasswordUser
	mk := func(name string, i int, labels any) int64 {
		return s.createPlatform(t, map[string]any{"name": name, "host": sshd.Addr(200 + i), "port": sshd.Port,
			"username": pw.Name, "auth_method": "PASSWORD", "password": pw.Password, "labels": labels})
	}
	web1 := mk("web-1", 0, map[string]string{"role": "web", "env": "prod"})
	mk("web-2", 1, "role=web,env=stage")
	db1 := mk("db-1", 2, map[string]string{"role": "db", "env": "prod"})

	list := func(q string) []string {
		var ps []api.Platform
		mustCall(t, http.StatusOK, "GET", s.URL+"/api/platforms/?"+q, nil, &ps)
		var names []string
		for _, p := range ps {
			names = append(names, p.Name)
		}
		return names
	}
	for q, want := range map[string]string{
		"label=role=web":          "[web-1 web-2]",
		"label=role=web,env=prod": "[web-1]",
		"name=db":                 "[db-1]",
		"limit=2&offset=2":        "[web-2]",
	} {
		if got := fmt.Sprint(list(q)); got != want {
			t.Errorf("?%s = %s, want %s", q, got, want)
		}
	}
	// Update keeps the secret when none is given, and it still logs in.
	var p api.Platform
	mustCall(t, http.StatusOK, "PUT", fmt.Sprintf("%s/api/platforms/%d", s.URL, db1), map[string]any{"name": "db-1",
		"host": sshd.Addr(202), "port": sshd.Port, "username": pw.Name, "labels": "role=db,env=stage"}, &p)
	if p.Labels["env"] != "stage" {
		t.Fatalf("labels not updated: %+v", p.Labels)
	}
	if st := hostState(t, s.runOn(t, "true", db1), 0); st != "ok" {
		t.Fatalf("after update: %s", st)
	}
	if got := fmt.Sprint(list("state=reachable")); got != "[db-1]" {
		t.Errorf("?state=reachable = %s", got)
	}
	// Names are unique.
	st, body := call(t, "PUT", fmt.Sprintf("%s/api/platforms/%d", s.URL, db1), map[string]any{"name": "web-1",
		"host": sshd.Addr(202), "port": sshd.Port, "username": pw.Name}, nil)
	if st != http.StatusConflict {
		t.Fatalf("duplicate name: %d %s", st, body)
	}
	// A platform in a running run cannot be deleted; afterwards it can.
	runID := s.startRun(t, map[string]any{"command": "sleep 3", "targets": map[string]any{"platform_ids": []int64{web1}}})
	if st, body := call(t, "DELETE", fmt.Sprintf("%s/api/platforms/%d", s.URL, web1), nil, nil); st != http.StatusConflict {
		t.Fatalf("delete while running: %d %s", st, body)
	}
	s.waitRun(t, runID)
	mustCall(t, http.StatusNoContent, "DELETE", fmt.Sprintf("%s/api/platforms/%d", s.URL, web1), nil, nil)
	mustCall(t, http.StatusNotFound, "GET", fmt.Sprintf("%s/api/platforms/%d", s.URL, web1), nil, nil)
}

// TestKeyAuthEveryKind logs in with each key type, with and without a
// passphrase, through the API's platform test and a run.
func TestKeyAuthEveryKind(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	u := sshd.NewUser(t)
	i := 0
	for _, kind := range []string{"ed25519", "ecdsa", "rsa"} {
		for _, pass := range []string{"", "correct horse"} {
			pemKey, pub := genKey(t, kind, pass)
			sshd.AuthorizeKey(t, u, pub)
			req := map[string]any{"name": fmt.Sprintf("%s-%d", kind, i), "host": sshd.Addr(210 + i), "port": sshd.Port,
				"username": u.Name, "auth_method": "private_key", "private_key": string(pemKey)}
			if pass != "" {
				st, body := call(t, "POST", s.URL+"/api/platforms/", withField(req, "passphrase", "wrong"), nil)
				if st != http.StatusBadRequest || !strings.Contains(string(body), "passphrase") {
					t.Fatalf("%s: wrong passphrase: %d %s", kind, st, body)
				}
				req["passphrase"] = pass
			}
			id := s.createPlatform(t, req)
			var res struct {
				OK    bool   `json:"ok"`
				State string `json:"state"`
			}
			mustCall(t, http.StatusOK, "POST", fmt.Sprintf("%s/api/platforms/%d/test", s.URL, id), nil, &res)
			if !res.OK {
				t.Fatalf("%s pass=%q: test %+v", kind, pass, res)
			}
			if st := hostState(t, s.runOn(t, "id -un", id), 0); st != "ok" {
				t.Fatalf("%s pass=%q: run %s", kind, pass, st)
			}
			i++
		}
	}
}

func withField(m map[string]any, k string, v any) map[string]any {
	out := map[string]any{}
	for kk, vv := range m {
		out[kk] = vv
	}
	out[k] = v
	return out
}

func TestJumpChainOfTwo(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	pw := sshd.PasswordUser
	mk := func(name string, i int, jump *int64) int64 {
		req := map[string]any{"name": name, "host": sshd.Addr(230 + i), "port": sshd.Port,
			"username": pw.Name, "auth_method": "password", "password": pw.Password}
		if jump != nil {
			req["jump_platform_id"] = *jump
		}
		return s.createPlatform(t, req)
	}
	outer := mk("bastion", 0, nil)
	inner := mk("inner-bastion", 1, &outer)
	target := mk("behind", 2, &inner)
	runID := s.startRun(t, map[string]any{"command": "echo $SSH_CONNECTION", "targets": map[string]any{"platform_ids": []int64{target}}})
	r := s.waitRun(t, runID)
	if hostState(t, r, 0) != "ok" {
		t.Fatalf("through two jump hosts: %+v", r.Hosts[0])
	}
	out := hostOutput(s.wsCollect(t, runID, 0, 0), "stdout")["behind"]
	if !strings.Contains(out, " "+sshd.Addr(232)+" ") {
		t.Fatalf("the command did not run on the target: %q", out)
	}
	// A jump host that is in use cannot be deleted.
	if st, _ := call(t, "DELETE", fmt.Sprintf("%s/api/platforms/%d", s.URL, inner), nil, nil); st != http.StatusConflict {
		t.Fatalf("deleting a jump host in use: %d", st)
	}
}

func TestHostKeyAcceptUnderBothPolicies(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	pw := sshd.PasswordUser
	for i, policy := range []string{"auto_add", "strict"} {
		id := s.createPlatform(t, map[string]any{"name": "hk-" + policy, "host": sshd.Addr(240 + i), "port": sshd.Port,
			"username": pw.Name, "auth_method": "password", "password": pw.Password, "host_key_policy": policy})
		url := fmt.Sprintf("%s/api/platforms/%d", s.URL, id)
		first := hostState(t, s.runOn(t, "true", id), 0)
		var hk struct {
			Pinned             string `json:"pinned_fingerprint"`
			OfferedFingerprint string `json:"offered_fingerprint"`
		}
		if policy == "strict" {
			if first != "hostkey_rejected" {
				t.Fatalf("strict accepted an unknown host: %s", first)
			}
		} else if first != "ok" {
			t.Fatalf("auto_add first contact: %s", first)
		}
		if policy == "auto_add" {
			mustCall(t, http.StatusOK, "GET", url+"/host_key", nil, &hk)
			if hk.Pinned == "" {
				t.Fatal("auto_add pinned nothing")
			}
			sshd.RestartWithNewHostKeys(t)
			if st := hostState(t, s.runOn(t, "true", id), 0); st != "hostkey_rejected" {
				t.Fatalf("changed key: %s", st)
			}
		}
		mustCall(t, http.StatusOK, "GET", url+"/host_key", nil, &hk)
		if hk.OfferedFingerprint == "" || hk.OfferedFingerprint == hk.Pinned {
			t.Fatalf("%s: offered %+v", policy, hk)
		}
		if st, _ := call(t, "POST", url+"/host_key/accept", map[string]string{"fingerprint": "SHA256:not-it"}, nil); st != http.StatusConflict {
			t.Fatalf("accepting another fingerprint: %d", st)
		}
		mustCall(t, http.StatusOK, "POST", url+"/host_key/accept", map[string]string{"fingerprint": hk.OfferedFingerprint}, nil)
		if st := hostState(t, s.runOn(t, "true", id), 0); st != "ok" {
			t.Fatalf("%s after accept: %s", policy, st)
		}
	}
}

// TestCredentialsEncryptedAndRotated reads every table for plaintext, then
// rotates to a new key and checks every credential still logs in.
func TestCredentialsEncryptedAndRotated(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	oldKey, _ := secrets.GenerateKey()
	env := map[string]string{"DATABASE_URL": testenv.Postgres(t), "FERNET_KEY": oldKey, "SECRET_KEY": "rotation-secret-key-0123456789abcdef01"}
	s := startServe(t, env)
	pw, ku := sshd.PasswordUser, sshd.KeyUser
	a := s.createPlatform(t, map[string]any{"name": "pw", "host": sshd.Addr(250), "port": sshd.Port,
		"username": pw.Name, "auth_method": "password", "password": pw.Password})
	b := s.createPlatform(t, map[string]any{"name": "key", "host": sshd.Addr(251), "port": sshd.Port,
		"username": ku.Name, "auth_method": "private_key", "private_key": string(ku.KeyPEM)})
	var cr struct {
		ID int64 `json:"id"`
	}
	mustCall(t, http.StatusCreated, "POST", s.URL+"/api/credentials", map[string]any{"name": "shared-pw", "kind": "password", "password": pw.Password}, &cr)
	c := s.createPlatform(t, map[string]any{"name": "shared", "host": sshd.Addr(252), "port": sshd.Port,
		"username": pw.Name, "auth_method": "password", "credential_id": cr.ID})

	dump := dumpDatabase(t, s.DB)
	keyBody := strings.Split(string(ku.KeyPEM), "\n")[1]
	for name, secret := range map[string]string{"password": pw.Password, "private key": keyBody} {
		if strings.Contains(dump, secret) {
			t.Fatalf("the %s is stored in plaintext", name)
		}
	}
	var creds []map[string]any
	_, body := call(t, "GET", s.URL+"/api/credentials", nil, &creds)
	if strings.Contains(string(body), pw.Password) {
		t.Fatal("the API returned a password")
	}

	newKey, _ := secrets.GenerateKey()
	renv := map[string]string{"DATABASE_URL": env["DATABASE_URL"], "FERNET_KEY": newKey + "," + oldKey}
	var out strings.Builder
	if err := run(context.Background(), []string{"secrets", "rotate"}, func(k string) string { return renv[k] }, strings.NewReader(""), &out, &out); err != nil {
		t.Fatalf("rotate: %v %s", err, out.String())
	}
	// Three secrets above, and testum's identity key pair, made at first start.
	if !strings.Contains(out.String(), "4 re-encrypted") {
		t.Fatalf("rotate said %q", out.String())
	}
	// Only the new key is needed now.
	env2 := map[string]string{"DATABASE_URL": env["DATABASE_URL"], "FERNET_KEY": newKey, "SECRET_KEY": env["SECRET_KEY"]}
	s2 := startServe(t, env2)
	s2.login(t)
	r := s2.runOn(t, "true", a, b, c)
	for i := range 3 {
		if st := hostState(t, r, i); st != "ok" {
			t.Fatalf("host %d after rotation: %s (%s)", i, st, r.Hosts[i].Error)
		}
	}
	// A wrong key refuses to start, with a clear message.
	wrong, _ := secrets.GenerateKey()
	var errw strings.Builder
	wenv := map[string]string{"DATABASE_URL": env["DATABASE_URL"], "FERNET_KEY": wrong, "SECRET_KEY": env["SECRET_KEY"],
		"TESTUM_DATA_DIR": t.TempDir(), "TESTUM_LISTEN": "127.0.0.1:0"}
	err := run(context.Background(), []string{"serve"}, func(k string) string { return wenv[k] }, strings.NewReader(""), &errw, &errw)
	if err == nil || !strings.Contains(err.Error(), "FERNET_KEY does not match") {
		t.Fatalf("a wrong FERNET_KEY: %v", err)
	}
}

// dumpDatabase renders every row of every table as text.
func dumpDatabase(t *testing.T, url string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, tb := range tables {
		rows, err := conn.Query(ctx, "SELECT row_to_json(x)::text FROM "+pgx.Identifier{tb}.Sanitize()+" x")
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(strings.Join(lines, "\n"))
		// bytea columns: also as raw bytes.
		rows, err = conn.Query(ctx, "SELECT x::text FROM "+pgx.Identifier{tb}.Sanitize()+" x")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		b.WriteString(strings.Join(raw, "\n"))
	}
	return b.String()
}

func TestDeployAndRevokeKeys(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	u := sshd.NewUser(t)
	sshDir := filepath.Join(u.Home, ".ssh")
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		t.Fatal(err)
	}
	_, other := genKey(t, "ed25519", "")
	existing := "# managed by hand\n" + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other))) + " someone@laptop\n\n# end"
	ak := filepath.Join(sshDir, "authorized_keys")
	if err := os.WriteFile(ak, []byte(existing), 0o640); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{sshDir, ak} {
		if err := os.Chown(p, u.UID, u.GID); err != nil {
			t.Fatal(err)
		}
	}
	id := s.createPlatform(t, map[string]any{"name": "deploy", "host": sshd.Addr(260), "port": sshd.Port,
		"username": u.Name, "auth_method": "password", "password": u.Password})
	_, pub := genKey(t, "ecdsa", "")
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	var k struct {
		ID          int64  `json:"id"`
		Fingerprint string `json:"fingerprint"`
	}
	mustCall(t, http.StatusCreated, "POST", s.URL+"/api/keys/", map[string]any{"name": "ops", "public_key": line + " ops@desk"}, &k)
	if st, _ := call(t, "POST", s.URL+"/api/keys/", map[string]any{"name": "ops-again", "public_key": line}, nil); st != http.StatusConflict {
		t.Fatalf("duplicate key: %d", st)
	}
	deploy := func(path string, body map[string]any) api.Run {
		var task api.TaskResponse
		mustCall(t, http.StatusCreated, "POST", fmt.Sprintf("%s/api/platforms/%d/%s", s.URL, id, path), body, &task)
		return s.waitRun(t, task.TaskID)
	}
	for range 2 {
		if st := hostState(t, deploy("deploy_keys", map[string]any{"key_ids": []int64{k.ID}, "identity": true}), 0); st != "ok" {
			t.Fatalf("deploy: %s", st)
		}
	}
	got, err := os.ReadFile(ak)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(got), existing+"\n") || strings.Count(string(got), line) != 1 || strings.Count(string(got), "testum") != 1 {
		t.Fatalf("authorized_keys after two deploys:\n%s", got)
	}
	if fi, _ := os.Stat(ak); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode changed to %v", fi.Mode().Perm())
	}
	// testum's identity now logs in: move the platform to it.
	var ident struct {
		CredentialID int64 `json:"credential_id"`
	}
	mustCall(t, http.StatusOK, "GET", s.URL+"/api/keys/identity", nil, &ident)
	mustCall(t, http.StatusOK, "PUT", fmt.Sprintf("%s/api/platforms/%d", s.URL, id), map[string]any{"name": "deploy",
		"host": sshd.Addr(260), "port": sshd.Port, "username": u.Name, "auth_method": "private_key", "credential_id": ident.CredentialID}, nil)
	if st := hostState(t, s.runOn(t, "true", id), 0); st != "ok" {
		t.Fatalf("login with the identity: %s", st)
	}
	if st := hostState(t, deploy("revoke_keys", map[string]any{"key_ids": []int64{k.ID}}), 0); st != "ok" {
		t.Fatalf("revoke: %s", st)
	}
	got, _ = os.ReadFile(ak)
	if strings.Contains(string(got), line) || !strings.HasPrefix(string(got), existing) {
		t.Fatalf("after revoke:\n%s", got)
	}
	// A deploy that cannot write leaves the file whole and no temp file.
	if err := os.Chmod(sshDir, 0o500); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(ak)
	if st := hostState(t, deploy("deploy_keys", map[string]any{"key_ids": []int64{k.ID}}), 0); st != "failed" {
		t.Fatalf("deploy into a read-only dir: %s", st)
	}
	after, _ := os.ReadFile(ak)
	entries, _ := os.ReadDir(sshDir)
	if string(before) != string(after) || len(entries) != 1 {
		t.Fatalf("a failed deploy changed things: %d entries", len(entries))
	}
	// A user with no ~/.ssh gets one (0700) and an authorized_keys (0600).
	fresh := sshd.NewUser(t)
	_ = os.RemoveAll(filepath.Join(fresh.Home, ".ssh"))
	freshID := s.createPlatform(t, map[string]any{"name": "fresh", "host": sshd.Addr(261), "port": sshd.Port,
		"username": fresh.Name, "auth_method": "password", "password": fresh.Password})
	var task api.TaskResponse
	mustCall(t, http.StatusCreated, "POST", fmt.Sprintf("%s/api/platforms/%d/deploy_keys", s.URL, freshID), map[string]any{"key_ids": []int64{k.ID}}, &task)
	if st := hostState(t, s.waitRun(t, task.TaskID), 0); st != "ok" {
		t.Fatalf("deploy to a user without ~/.ssh: %s", st)
	}
	for path, mode := range map[string]os.FileMode{filepath.Join(fresh.Home, ".ssh"): 0o700, filepath.Join(fresh.Home, ".ssh", "authorized_keys"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, want mode %v", path, err, mode)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(fresh.Home, ".ssh", "authorized_keys")); strings.TrimSpace(string(got)) != line+" ops@desk" {
		t.Errorf("fresh authorized_keys: %q", got)
	}
}

func TestPlatformBadInput(t *testing.T) {
	t.Parallel()
	s := startServe(t, nil)
	good := map[string]any{"name": "ok", "host": "127.0.0.1", "username": "u", "auth_method": "password", "password": "p"}
	for name, req := range map[string]map[string]any{
		"host with spaces":   withField(good, "host", "my host"),
		"label without =":    withField(good, "labels", "role"),
		"key does not parse": withField(withField(good, "auth_method", "private_key"), "private_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n-----END OPENSSH PRIVATE KEY-----"),
		"unknown method":     withField(good, "auth_method", "kerberos"),
		"port 0":             withField(good, "port", 0),
		"jump to nowhere":    withField(good, "jump_platform_id", 99999),
	} {
		st, body := call(t, "POST", s.URL+"/api/platforms/", req, nil)
		if st != http.StatusBadRequest || !strings.Contains(string(body), `"error"`) {
			t.Errorf("%s: %d %s", name, st, body)
		}
	}
	for name, key := range map[string]string{"garbage": "ssh-ed25519 not-base64!", "private key": "-----BEGIN OPENSSH PRIVATE KEY-----", "two lines": "a\nb", "empty": ""} {
		st, body := call(t, "POST", s.URL+"/api/keys/", map[string]any{"name": "k", "public_key": key}, nil)
		if st != http.StatusBadRequest {
			t.Errorf("public key %s: %d %s", name, st, body)
		}
	}
	var ps []api.Platform
	mustCall(t, http.StatusOK, "GET", s.URL+"/api/platforms/", nil, &ps)
	if len(ps) != 0 {
		t.Fatalf("bad input left platforms: %+v", ps)
	}
}

func TestImportSSHConfigAndAnsibleInventory(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	pw := sshd.PasswordUser
	sshConfig := fmt.Sprintf(`# fleet
Host bastion
    HostName %s
    Port %d

Host app1 app2
    HostName %s
    Port %d
    ProxyJump bastion

Host broken
    HostName %s
    Port 99999

Match host *.internal
    User nobody

Host *
    User %s
`, sshd.Addr(270), sshd.Port, sshd.Addr(271), sshd.Port, sshd.Addr(272), pw.Name)
	var res struct {
		Created int `json:"created"`
		Items   []struct {
			Name, Result, Reason string
			Line                 int
		} `json:"items"`
	}
	mustCall(t, http.StatusOK, "POST", s.URL+"/api/platforms/import", map[string]any{"format": "ssh_config", "content": sshConfig,
		"auth_method": "password", "password": pw.Password}, &res)
	if res.Created != 3 {
		t.Fatalf("ssh_config import: %+v", res)
	}
	rejected := 0
	for _, it := range res.Items {
		if it.Result == "rejected" {
			rejected++
		}
	}
	if rejected < 2 { // the bad port and the Match block
		t.Fatalf("problems not reported: %+v", res.Items)
	}
	var apps []api.Platform
	mustCall(t, http.StatusOK, "GET", s.URL+"/api/platforms/?name=app", nil, &apps)
	if len(apps) != 2 || apps[0].JumpPlatformID == nil {
		t.Fatalf("apps: %+v", apps)
	}
	r := s.runOn(t, "true", apps[0].ID, apps[1].ID)
	if r.State != "succeeded" {
		t.Fatalf("imported hosts through their jump host: %s %+v", r.State, r.Hosts)
	}

	ini := fmt.Sprintf(`[web]
web[01:03] ansible_host=%s ansible_port=%d

[db]
db1 ansible_host=%s ansible_port=%d ansible_user=%s tier=primary
bad-line ansible_port=notaport

[prod:children]
web
db
`, sshd.Addr(280), sshd.Port, sshd.Addr(281), sshd.Port, pw.Name)
	mustCall(t, http.StatusOK, "POST", s.URL+"/api/platforms/import", map[string]any{"content": ini,
		"username": pw.Name, "auth_method": "password", "password": pw.Password, "labels_from_vars": []string{"tier"}}, &res)
	if res.Created != 4 {
		t.Fatalf("ansible import: %+v", res)
	}
	var prod []api.Platform
	mustCall(t, http.StatusOK, "GET", s.URL+"/api/platforms/?label=prod=true", nil, &prod)
	if len(prod) != 4 {
		t.Fatalf("group labels: %d platforms with prod", len(prod))
	}
	var db []api.Platform
	mustCall(t, http.StatusOK, "GET", s.URL+"/api/platforms/?label=db=true,tier=primary", nil, &db)
	if len(db) != 1 || db[0].Name != "db1" {
		t.Fatalf("db labels: %+v", db)
	}
	// Importing again skips what exists.
	mustCall(t, http.StatusOK, "POST", s.URL+"/api/platforms/import", map[string]any{"content": ini,
		"username": pw.Name, "auth_method": "password", "password": pw.Password}, &res)
	if res.Created != 0 {
		t.Fatalf("re-import created %d", res.Created)
	}
}
