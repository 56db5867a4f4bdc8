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

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/secrets"
	"github.com/testum/testum/libs/testenv"
)

// runOn runs a command on platforms and returns the finished run.
func (s *server) runOn(t *testing.T, cmd string, ids ...int64) apiclient.Run {
	t.Helper()
	return s.waitRun(t, s.startRun(t, map[string]any{"command": cmd, "timeout": 60, "targets": map[string]any{"platform_ids": ids}}))
}

func hostState(t *testing.T, r apiclient.Run, i int) string {
	t.Helper()
	if len(hostsOf(r)) <= i {
		t.Fatalf("run has %d hosts", len(hostsOf(r)))
	}
	return string((*r.Hosts)[i].State)
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
	ctx := context.Background()

	list := func(q apiclient.PlatformSearchParams) []string {
		return platformNames(s.platforms(t, q))
	}
	for _, tc := range []struct {
		q    apiclient.PlatformSearchParams
		want string
	}{
		{apiclient.PlatformSearchParams{Label: ptr("role=web")}, "[web-1 web-2]"},
		{apiclient.PlatformSearchParams{Label: ptr("role=web,env=prod")}, "[web-1]"},
		{apiclient.PlatformSearchParams{Name: ptr("db")}, "[db-1]"},
		{apiclient.PlatformSearchParams{Limit: ptr(2), Offset: ptr(2)}, "[web-2]"},
	} {
		if got := fmt.Sprint(list(tc.q)); got != tc.want {
			t.Errorf("%+v = %s, want %s", tc.q, got, tc.want)
		}
	}
	// Update keeps the secret when none is given, and it still logs in.
	up, err := s.api.PlatformUpdateWithBodyWithResponse(ctx, db1, "application/json", jsonBody(t, map[string]any{"name": "db-1",
		"host": sshd.Addr(202), "port": sshd.Port, "username": pw.Name, "labels": "role=db,env=stage"}))
	checkStatus(t, "update", err, up.StatusCode(), http.StatusOK, up.Body)
	if up.JSON200 == nil || up.JSON200.Labels["env"] != "stage" {
		t.Fatalf("labels not updated: %s", up.Body)
	}
	if st := hostState(t, s.runOn(t, "true", db1), 0); st != "ok" {
		t.Fatalf("after update: %s", st)
	}
	if got := fmt.Sprint(list(apiclient.PlatformSearchParams{State: ptr("reachable")})); got != "[db-1]" {
		t.Errorf("?state=reachable = %s", got)
	}
	// Names are unique.
	dup, err := s.api.PlatformUpdateWithBodyWithResponse(ctx, db1, "application/json", jsonBody(t, map[string]any{"name": "web-1",
		"host": sshd.Addr(202), "port": sshd.Port, "username": pw.Name}))
	checkStatus(t, "duplicate name", err, dup.StatusCode(), http.StatusConflict, dup.Body)
	// A platform in a running run cannot be deleted; afterwards it can.
	runID := s.startRun(t, map[string]any{"command": "sleep 3", "targets": map[string]any{"platform_ids": []int64{web1}}})
	del, err := s.api.PlatformDeleteWithResponse(ctx, web1)
	checkStatus(t, "delete while running", err, del.StatusCode(), http.StatusConflict, del.Body)
	s.waitRun(t, runID)
	del, err = s.api.PlatformDeleteWithResponse(ctx, web1)
	checkStatus(t, "delete", err, del.StatusCode(), http.StatusNoContent, del.Body)
	gone, err := s.api.PlatformGetWithResponse(ctx, web1)
	checkStatus(t, "get deleted", err, gone.StatusCode(), http.StatusNotFound, gone.Body)
}

// platforms lists platforms through the generated client.
func (s *server) platforms(t *testing.T, q apiclient.PlatformSearchParams) []apiclient.Platform {
	t.Helper()
	resp, err := s.api.PlatformSearchWithResponse(context.Background(), &q)
	checkStatus(t, "list platforms", err, resp.StatusCode(), http.StatusOK, resp.Body)
	if resp.JSON200 == nil {
		t.Fatalf("list platforms: %s", resp.Body)
	}
	return *resp.JSON200
}

func platformNames(ps []apiclient.Platform) []string {
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	return names
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
				resp, err := s.api.PlatformCreateWithBodyWithResponse(context.Background(), "application/json", jsonBody(t, withField(req, "passphrase", "wrong")))
				if err != nil {
					t.Fatal(err)
				}
				if resp.JSON400 == nil || !strings.Contains(resp.JSON400.Error, "passphrase") {
					t.Fatalf("%s: wrong passphrase: %d %s", kind, resp.StatusCode(), resp.Body)
				}
				req["passphrase"] = pass
			}
			id := s.createPlatform(t, req)
			if res := s.testPlatform(t, id); !res.OK {
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
		t.Fatalf("through two jump hosts: %+v", (*r.Hosts)[0])
	}
	out := hostOutput(s.wsCollect(t, runID, 0, 0), "stdout")["behind"]
	if !strings.Contains(out, " "+sshd.Addr(232)+" ") {
		t.Fatalf("the command did not run on the target: %q", out)
	}
	// A jump host that is in use cannot be deleted.
	del, err := s.api.PlatformDeleteWithResponse(context.Background(), inner)
	checkStatus(t, "deleting a jump host in use", err, del.StatusCode(), http.StatusConflict, del.Body)
}

func TestHostKeyAcceptUnderBothPolicies(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	pw := sshd.PasswordUser
	for i, policy := range []string{"auto_add", "strict"} {
		id := s.createPlatform(t, map[string]any{"name": "hk-" + policy, "host": sshd.Addr(240 + i), "port": sshd.Port,
			"username": pw.Name, "auth_method": "password", "password": pw.Password, "host_key_policy": policy})
		first := hostState(t, s.runOn(t, "true", id), 0)
		if policy == "strict" {
			if first != "hostkey_rejected" {
				t.Fatalf("strict accepted an unknown host: %s", first)
			}
		} else if first != "ok" {
			t.Fatalf("auto_add first contact: %s", first)
		}
		if policy == "auto_add" {
			if s.hostKeys(t, id).PinnedFingerprint == "" {
				t.Fatal("auto_add pinned nothing")
			}
			sshd.RestartWithNewHostKeys(t)
			if st := hostState(t, s.runOn(t, "true", id), 0); st != "hostkey_rejected" {
				t.Fatalf("changed key: %s", st)
			}
		}
		hk := s.hostKeys(t, id)
		if hk.OfferedFingerprint == "" || hk.OfferedFingerprint == hk.PinnedFingerprint {
			t.Fatalf("%s: offered %+v", policy, hk)
		}
		other, err := s.api.HostKeyAcceptWithResponse(context.Background(), id, apiclient.HostKeyAcceptRequest{Fingerprint: "SHA256:not-it"})
		checkStatus(t, "accepting another fingerprint", err, other.StatusCode(), http.StatusConflict, other.Body)
		s.acceptOffered(t, id)
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
	cr, err := s.api.CredentialCreateWithResponse(context.Background(),
		apiclient.CredentialRequest{Name: "shared-pw", Kind: ptr("password"), Password: ptr(pw.Password)})
	checkStatus(t, "credential", err, cr.StatusCode(), http.StatusCreated, nil)
	if cr.JSON201 == nil {
		t.Fatalf("credential: no body")
	}
	c := s.createPlatform(t, map[string]any{"name": "shared", "host": sshd.Addr(252), "port": sshd.Port,
		"username": pw.Name, "auth_method": "password", "credential_id": cr.JSON201.Id})

	dump := dumpDatabase(t, s.DB)
	keyBody := strings.Split(string(ku.KeyPEM), "\n")[1]
	for name, secret := range map[string]string{"password": pw.Password, "private key": keyBody} {
		if strings.Contains(dump, secret) {
			t.Fatalf("the %s is stored in plaintext", name)
		}
	}
	creds, err := s.api.CredentialListWithResponse(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(creds.Body), pw.Password) {
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
			t.Fatalf("host %d after rotation: %s (%s)", i, st, val((*r.Hosts)[i].Error))
		}
	}
	// A wrong key refuses to start, with a clear message.
	wrong, _ := secrets.GenerateKey()
	var errw strings.Builder
	wenv := map[string]string{"DATABASE_URL": env["DATABASE_URL"], "FERNET_KEY": wrong, "SECRET_KEY": env["SECRET_KEY"],
		"TESTUM_DATA_DIR": t.TempDir(), "TESTUM_LISTEN": "127.0.0.1:0"}
	err = run(context.Background(), []string{"serve"}, func(k string) string { return wenv[k] }, strings.NewReader(""), &errw, &errw)
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
	ctx := context.Background()
	made, err := s.api.KeyCreateWithResponse(ctx, apiclient.KeyRequest{Name: "ops", PublicKey: line + " ops@desk"})
	checkStatus(t, "key", err, made.StatusCode(), http.StatusCreated, made.Body)
	if made.JSON201 == nil {
		t.Fatalf("key: %s", made.Body)
	}
	k := *made.JSON201
	again, err := s.api.KeyCreateWithResponse(ctx, apiclient.KeyRequest{Name: "ops-again", PublicKey: line})
	checkStatus(t, "duplicate key", err, again.StatusCode(), http.StatusConflict, again.Body)
	// wait follows the task a deploy or revoke answered with.
	wait := func(what string, status int, raw []byte, task *apiclient.KeysRun) apiclient.Run {
		t.Helper()
		checkStatus(t, what, nil, status, http.StatusCreated, raw)
		if task == nil {
			t.Fatalf("%s: %s", what, raw)
		}
		return s.waitRun(t, task.TaskId.String())
	}
	deployTo := func(pid int64, body apiclient.DeployRequest) apiclient.Run {
		t.Helper()
		resp, err := s.api.DeployKeysWithResponse(ctx, pid, body)
		if err != nil {
			t.Fatalf("deploy_keys: %v", err)
		}
		return wait("deploy_keys", resp.StatusCode(), resp.Body, resp.JSON201)
	}
	revoke := func(body apiclient.DeployRequest) apiclient.Run {
		t.Helper()
		resp, err := s.api.RevokeKeysWithResponse(ctx, id, body)
		if err != nil {
			t.Fatalf("revoke_keys: %v", err)
		}
		return wait("revoke_keys", resp.StatusCode(), resp.Body, resp.JSON201)
	}
	for range 2 {
		if st := hostState(t, deployTo(id, apiclient.DeployRequest{KeyIds: &[]int64{k.Id}, Identity: ptr(true)}), 0); st != "ok" {
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
	ident, err := s.api.IdentityGetWithResponse(ctx)
	checkStatus(t, "identity", err, ident.StatusCode(), http.StatusOK, ident.Body)
	if ident.JSON200 == nil {
		t.Fatalf("identity: %s", ident.Body)
	}
	up, err := s.api.PlatformUpdateWithBodyWithResponse(ctx, id, "application/json", jsonBody(t, map[string]any{"name": "deploy",
		"host": sshd.Addr(260), "port": sshd.Port, "username": u.Name, "auth_method": "private_key", "credential_id": ident.JSON200.CredentialId}))
	checkStatus(t, "update", err, up.StatusCode(), http.StatusOK, up.Body)
	if st := hostState(t, s.runOn(t, "true", id), 0); st != "ok" {
		t.Fatalf("login with the identity: %s", st)
	}
	if st := hostState(t, revoke(apiclient.DeployRequest{KeyIds: &[]int64{k.Id}}), 0); st != "ok" {
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
	if st := hostState(t, deployTo(id, apiclient.DeployRequest{KeyIds: &[]int64{k.Id}}), 0); st != "failed" {
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
	if st := hostState(t, deployTo(freshID, apiclient.DeployRequest{KeyIds: &[]int64{k.Id}}), 0); st != "ok" {
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
		resp, err := s.api.PlatformCreateWithBodyWithResponse(context.Background(), "application/json", jsonBody(t, req))
		if err != nil {
			t.Fatal(err)
		}
		if resp.JSON400 == nil || resp.JSON400.Error == "" {
			t.Errorf("%s: %d %s", name, resp.StatusCode(), resp.Body)
		}
	}
	for name, key := range map[string]string{"garbage": "ssh-ed25519 not-base64!", "private key": "-----BEGIN OPENSSH PRIVATE KEY-----", "two lines": "a\nb", "empty": ""} {
		resp, err := s.api.KeyCreateWithResponse(context.Background(), apiclient.KeyRequest{Name: "k", PublicKey: key})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode() != http.StatusBadRequest {
			t.Errorf("public key %s: %d %s", name, resp.StatusCode(), resp.Body)
		}
	}
	if ps := s.platforms(t, apiclient.PlatformSearchParams{}); len(ps) != 0 {
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
	res := s.importPlatforms(t, map[string]any{"format": "ssh_config", "content": sshConfig,
		"auth_method": "password", "password": pw.Password})
	if res.Created != 3 || res.Items == nil {
		t.Fatalf("ssh_config import: %+v", res)
	}
	rejected := 0
	for _, it := range *res.Items {
		if it.Result == "rejected" {
			rejected++
		}
	}
	if rejected < 2 { // the bad port and the Match block
		t.Fatalf("problems not reported: %+v", res.Items)
	}
	apps := s.platforms(t, apiclient.PlatformSearchParams{Name: ptr("app")})
	if len(apps) != 2 || apps[0].JumpPlatformId == nil {
		t.Fatalf("apps: %+v", apps)
	}
	r := s.runOn(t, "true", apps[0].Id, apps[1].Id)
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
	res = s.importPlatforms(t, map[string]any{"content": ini,
		"username": pw.Name, "auth_method": "password", "password": pw.Password, "labels_from_vars": []string{"tier"}})
	if res.Created != 4 {
		t.Fatalf("ansible import: %+v", res)
	}
	if prod := s.platforms(t, apiclient.PlatformSearchParams{Label: ptr("prod=true")}); len(prod) != 4 {
		t.Fatalf("group labels: %d platforms with prod", len(prod))
	}
	if db := s.platforms(t, apiclient.PlatformSearchParams{Label: ptr("db=true,tier=primary")}); len(db) != 1 || db[0].Name != "db1" {
		t.Fatalf("db labels: %+v", db)
	}
	// Importing again skips what exists.
	res = s.importPlatforms(t, map[string]any{"content": ini,
		"username": pw.Name, "auth_method": "password", "password": pw.Password})
	if res.Created != 0 {
		t.Fatalf("re-import created %d", res.Created)
	}
}

// importPlatforms posts an import, written as a map to send fields exactly
// as the tests spell them.
func (s *server) importPlatforms(t *testing.T, req map[string]any) apiclient.ImportResult {
	t.Helper()
	resp, err := s.api.PlatformImportWithBodyWithResponse(context.Background(), "application/json", jsonBody(t, req))
	checkStatus(t, "import", err, resp.StatusCode(), http.StatusOK, resp.Body)
	if resp.JSON200 == nil {
		t.Fatalf("import: %s", resp.Body)
	}
	return *resp.JSON200
}
