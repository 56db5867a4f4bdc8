package platforms

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// fakeStore keeps platforms and credentials in memory; it is its own Tx.
type fakeStore struct {
	platforms   map[int64]testum.Platform
	credentials map[int64]testum.Credential
	secrets     map[int64]store.NewSecret
	keys        []store.SSHKey
	audit       []testum.AuditEntry
	next        int64
}

func newFakeStore() *fakeStore {
	return &fakeStore{platforms: map[int64]testum.Platform{}, credentials: map[int64]testum.Credential{}, secrets: map[int64]store.NewSecret{}}
}

func (f *fakeStore) InTx(_ context.Context, fn func(tx Tx) error) error { return fn(f) }

func (f *fakeStore) PlatformHostKeys(context.Context, int64) (store.HostKeys, error) {
	return store.HostKeys{}, nil
}

func (f *fakeStore) CredentialCreate(_ context.Context, ns store.NewSecret) (testum.Credential, error) {
	f.next++
	cr := testum.Credential{ID: f.next, Name: ns.Name, Kind: ns.Kind, Fingerprint: ns.Fingerprint, PublicKey: ns.PublicKey}
	f.credentials[cr.ID], f.secrets[cr.ID] = cr, ns
	return cr, nil
}

func (f *fakeStore) Credential(_ context.Context, id int64) (testum.Credential, error) {
	cr, ok := f.credentials[id]
	if !ok {
		return cr, testum.NotFound("credential %d not found", id)
	}
	return cr, nil
}

func (f *fakeStore) CredentialDelete(_ context.Context, id int64) (testum.Credential, error) {
	cr, err := f.Credential(context.Background(), id)
	delete(f.credentials, id)
	return cr, err
}

func (f *fakeStore) platform(id int64, np store.NewPlatform) testum.Platform {
	if np.Secret != nil {
		cr, _ := f.CredentialCreate(context.Background(), *np.Secret)
		np.CredentialID = &cr.ID
	}
	return testum.Platform{ID: id, Name: np.Name, Host: np.Host, Port: np.Port, Username: np.Username,
		AuthMethod: np.AuthMethod, CredentialID: np.CredentialID, Labels: np.Labels, JumpPlatformID: np.JumpPlatformID}
}

func (f *fakeStore) PlatformCreate(_ context.Context, np store.NewPlatform) (testum.Platform, error) {
	for _, p := range f.platforms {
		if p.Name == np.Name {
			return testum.Platform{}, testum.Conflict("platform %s exists", np.Name)
		}
	}
	f.next++
	p := f.platform(f.next, np)
	f.platforms[p.ID] = p
	return p, nil
}

func (f *fakeStore) PlatformForUpdate(_ context.Context, id int64) (testum.Platform, error) {
	p, ok := f.platforms[id]
	if !ok {
		return p, testum.NotFound("platform %d not found", id)
	}
	return p, nil
}

func (f *fakeStore) PlatformUpdate(_ context.Context, id int64, np store.NewPlatform) (testum.Platform, error) {
	old := f.platforms[id]
	if np.Secret == nil && np.CredentialID == nil {
		np.CredentialID = old.CredentialID
	}
	p := f.platform(id, np)
	f.platforms[id] = p
	return p, nil
}

func (f *fakeStore) PlatformDelete(_ context.Context, id int64) (testum.Platform, error) {
	p, err := f.PlatformForUpdate(context.Background(), id)
	delete(f.platforms, id)
	return p, err
}

func (f *fakeStore) PlatformsByIDs(_ context.Context, ids []int64) ([]testum.Platform, error) {
	var out []testum.Platform
	for _, id := range ids {
		if p, ok := f.platforms[id]; ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func (f *fakeStore) PlatformNames(context.Context) (map[string]int64, []string, error) {
	m := map[string]int64{}
	var names []string
	for _, p := range f.platforms {
		m[p.Name] = p.ID
		names = append(names, p.Name)
	}
	return m, names, nil
}

func (f *fakeStore) PlatformAcceptHostKey(context.Context, int64, string) (bool, error) {
	return false, errors.New("not in this fake")
}

func (f *fakeStore) CredentialByName(_ context.Context, name string) (testum.Credential, error) {
	for _, cr := range f.credentials {
		if cr.Name == name {
			return cr, nil
		}
	}
	return testum.Credential{}, testum.NotFound("credential %s not found", name)
}

func (f *fakeStore) SSHKeysByIDs(_ context.Context, ids []int64) ([]store.SSHKey, error) {
	var out []store.SSHKey
	for _, k := range f.keys {
		if slices.Contains(ids, k.ID) {
			out = append(out, k)
		}
	}
	return out, nil
}

func (f *fakeStore) SSHKeyCreate(_ context.Context, name, line, fp, _ string) (store.SSHKey, error) {
	f.next++
	k := store.SSHKey{ID: f.next, Name: name, PublicKey: line, Fingerprint: fp}
	f.keys = append(f.keys, k)
	return k, nil
}

func (f *fakeStore) SSHKeyDelete(context.Context, int64) (store.SSHKey, error) {
	return store.SSHKey{}, errors.New("not in this fake")
}

func (f *fakeStore) Audit(_ context.Context, e testum.AuditEntry) error {
	f.audit = append(f.audit, e)
	return nil
}

func newService(t *testing.T, st *fakeStore) *Service {
	t.Helper()
	s, err := New(Config{}, st)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ptr[T any](v T) *T { return &v }

var ops = auth.Actor{UserID: 3, Username: "ops", Role: auth.RoleExtendedAdmin, IP: "192.0.2.4"}

func privateKey(t *testing.T, passphrase string) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}

// TestCreateCredential: a credential's secret is validated on its own,
// with every rule a platform's inline secret follows.
func TestCreateCredential(t *testing.T) {
	key, locked := privateKey(t, ""), privateKey(t, "open sesame")
	for _, tc := range []struct {
		name     string
		credName string
		secret   Secret
		wantErr  string
		wantKind testum.AuthMethod
	}{
		{name: "password inferred", credName: "shared", secret: Secret{Password: ptr("pw-1234")}, wantKind: testum.AuthPassword},
		{name: "key inferred", credName: "deploy", secret: Secret{PrivateKey: &key}, wantKind: testum.AuthPrivateKey},
		{name: "key with passphrase", credName: "locked", secret: Secret{AuthMethod: "Private_Key", PrivateKey: &locked, Passphrase: ptr("open sesame")}, wantKind: testum.AuthPrivateKey},
		{name: "wrong passphrase", credName: "locked2", secret: Secret{PrivateKey: &locked, Passphrase: ptr("nope")}, wantErr: "private_key:"},
		{name: "not a key", credName: "junk", secret: Secret{PrivateKey: ptr("hello")}, wantErr: "private_key:"},
		{name: "both", credName: "both", secret: Secret{Password: ptr("x"), PrivateKey: &key}, wantErr: "give only one of password, private_key and credential_id"},
		{name: "nothing", credName: "none", wantErr: "auth_method is required"},
		{name: "empty password", credName: "empty", secret: Secret{AuthMethod: "password", Password: ptr("")}, wantErr: "needs a non-empty password"},
		{name: "unknown method", credName: "krb", secret: Secret{AuthMethod: "kerberos", Password: ptr("x")}, wantErr: `auth_method "kerberos"`},
		{name: "bad name", credName: "a b", secret: Secret{Password: ptr("x")}, wantErr: "credential name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newFakeStore()
			cr, err := newService(t, st).CreateCredential(context.Background(), ops, tc.credName, tc.secret)
			if tc.wantErr != "" {
				if testum.CodeOf(err) != testum.CodeInvalid || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want invalid %q", err, tc.wantErr)
				}
				if len(st.credentials) != 0 {
					t.Errorf("stored a credential that failed validation")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cr.Kind != tc.wantKind || cr.Name != tc.credName || (cr.Kind == testum.AuthPrivateKey) != (cr.Fingerprint != "") {
				t.Errorf("credential %+v", cr)
			}
			if a := st.audit[0]; a.Action != "credential.create" || strings.Contains(a.Target+a.Actor, "pw-1234") {
				t.Errorf("audit %+v", a)
			}
		})
	}
}

func TestCreate(t *testing.T) {
	for _, tc := range []struct {
		name       string
		req        Request
		wantErr    string
		wantReason string
	}{
		{name: "valid", req: Request{Name: "web1", Host: "10.1.2.3", Username: "deploy", Secret: Secret{Password: ptr("pw")}, Labels: map[string]string{"role": "web"}}},
		{name: "bad name", req: Request{Name: "-web", Host: "h", Username: "u", Secret: Secret{Password: ptr("pw")}}, wantErr: "platform name"},
		{name: "bad host", req: Request{Name: "w", Host: "a b", Username: "u", Secret: Secret{Password: ptr("pw")}}, wantErr: "no spaces allowed"},
		{name: "bad port", req: Request{Name: "w", Host: "h", Port: ptr(0), Username: "u", Secret: Secret{Password: ptr("pw")}}, wantErr: "port 0 out of range"},
		{name: "bad policy", req: Request{Name: "w", Host: "h", Username: "u", HostKeyPolicy: "yolo", Secret: Secret{Password: ptr("pw")}}, wantErr: "host_key_policy"},
		{name: "bad label", req: Request{Name: "w", Host: "h", Username: "u", Labels: map[string]string{"role": "two words"}, Secret: Secret{Password: ptr("pw")}}, wantErr: "label role="},
		{name: "denied target", req: Request{Name: "w", Host: "169.254.169.254", Username: "u", Secret: Secret{Password: ptr("pw")}}, wantReason: "target_denied"},
		{name: "missing credential", req: Request{Name: "w", Host: "h", Username: "u", Secret: Secret{AuthMethod: "password"}, CredentialID: ptr[int64](42)}, wantErr: "credential_id 42 does not exist"},
		{name: "missing jump host", req: Request{Name: "w", Host: "h", Username: "u", Secret: Secret{Password: ptr("pw")}, JumpPlatformID: ptr[int64](42)}, wantErr: "jump_platform_id 42 does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newFakeStore()
			p, err := newService(t, st).Create(context.Background(), ops, tc.req)
			if tc.wantErr != "" || tc.wantReason != "" {
				var te *testum.Error
				if !errors.As(err, &te) || te.Code != testum.CodeInvalid || !strings.Contains(te.Message, tc.wantErr) || te.Reason != tc.wantReason {
					t.Fatalf("err = %#v, want invalid %q (reason %q)", err, tc.wantErr, tc.wantReason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Port != 22 || p.AuthMethod != testum.AuthPassword || p.CredentialID == nil || len(st.audit) != 1 {
				t.Errorf("platform %+v, audit %v", p, st.audit)
			}
		})
	}
}

// TestUpdateKeepsPasswordWithItsLogin: a platform's own password does not
// follow it to another host or user unless given again; a key does.
func TestUpdateKeepsPasswordWithItsLogin(t *testing.T) {
	ctx := context.Background()
	st := newFakeStore()
	s := newService(t, st)
	key := privateKey(t, "")
	pw, err := s.Create(ctx, ops, Request{Name: "db1", Host: "10.0.0.1", Username: "root", Secret: Secret{Password: ptr("pw-1")}})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := s.Create(ctx, ops, Request{Name: "db2", Host: "10.0.0.2", Username: "root", Secret: Secret{PrivateKey: &key}})
	if err != nil {
		t.Fatal(err)
	}
	moved := Request{Name: "db1", Host: "10.0.0.9", Username: "root"}
	var te *testum.Error
	if _, err := s.Update(ctx, ops, pw.ID, moved); !errors.As(err, &te) || te.Reason != "password_required" {
		t.Fatalf("moving a password platform without its password: %v", err)
	}
	if _, err := s.Update(ctx, ops, pw.ID, Request{Name: "db1", Host: "10.0.0.1", Username: "root", Labels: map[string]string{"env": "prod"}}); err != nil {
		t.Fatalf("relabelling keeps the password: %v", err)
	}
	if _, err := s.Update(ctx, ops, pw.ID, Request{Name: "db1", Host: "10.0.0.1", Username: "root", Secret: Secret{AuthMethod: "private_key"}}); err == nil ||
		!strings.Contains(err.Error(), "changing auth_method needs") {
		t.Fatalf("changing the method without a secret: %v", err)
	}
	p, err := s.Update(ctx, ops, kp.ID, Request{Name: "db2", Host: "10.0.0.8", Username: "admin"})
	if err != nil || p.CredentialID == nil || *p.CredentialID != *kp.CredentialID {
		t.Fatalf("a key platform moves with its key: %v %+v", err, p)
	}
	if _, err := s.Update(ctx, ops, kp.ID, Request{Name: "db2", Host: "h", Username: "u", JumpPlatformID: &kp.ID}); err == nil ||
		!strings.Contains(err.Error(), "its own jump host") {
		t.Fatalf("own jump host: %v", err)
	}
	if last := st.audit[len(st.audit)-1]; last.Action != "platform.update" || last.Details["secret_changed"] != false {
		t.Errorf("audit %+v", last)
	}
}

func TestImport(t *testing.T) {
	ctx := context.Background()
	st := newFakeStore()
	s := newService(t, st)
	if _, err := s.Create(ctx, ops, Request{Name: "web1", Host: "10.0.0.1", Username: "u", Secret: Secret{Password: ptr("pw")}}); err != nil {
		t.Fatal(err)
	}
	ini := `[web]
web1 ansible_host=10.0.0.1 ansible_user=deploy
web2 ansible_host=10.0.0.2 ansible_user=deploy ansible_password=own-pw
web3 ansible_host=10.0.0.3
web4 ansible_host=169.254.169.254 ansible_user=deploy
`
	var te *testum.Error
	if _, _, err := s.Import(ctx, ops, Import{Content: ini, Secret: Secret{Password: ptr("pw")}, LabelsFromVars: []string{"db_token"}}); !errors.As(err, &te) || te.Reason != "secret_label" {
		t.Fatalf("a secret-looking label: %v", err)
	}
	if _, _, err := s.Import(ctx, ops, Import{Content: ini, Secret: Secret{AuthMethod: "private_key"}}); err == nil {
		t.Fatal("a private_key import without a key was accepted")
	}
	created, items, err := s.Import(ctx, ops, Import{Content: ini})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, it := range items {
		got[it.Name] = it.Result
	}
	if created != 1 || got["web1"] != "skipped" || got["web2"] != "created" || got["web3"] != "rejected" || got["web4"] != "rejected" {
		t.Fatalf("created %d: %v", created, got)
	}
	var web2 testum.Platform
	for _, p := range st.platforms {
		if p.Name == "web2" {
			web2 = p
		}
	}
	if string(st.secrets[*web2.CredentialID].Secret) != "own-pw" || web2.Labels["web"] != "true" {
		t.Errorf("web2: %+v", web2)
	}
}

func TestParsePublicKey(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	plain := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	line, fp, err := ParsePublicKey("  " + plain + "   ops@laptop \n")
	if err != nil || line != plain+" ops@laptop" || fp != sshx.Fingerprint(signer.PublicKey()) {
		t.Fatalf("ParsePublicKey = %q %q %v", line, fp, err)
	}
	for _, bad := range []string{"", "ssh-ed25519 notbase64", `command="rm -rf /" ` + plain, plain + "\n" + plain} {
		if _, _, err := ParsePublicKey(bad); testum.CodeOf(err) != testum.CodeInvalid {
			t.Errorf("ParsePublicKey(%q) = %v, want invalid", bad, err)
		}
	}
}

// TestKeysScript: the deploy script carries exactly the keys asked for,
// testum's identity made once and audited as the caller's.
func TestKeysScript(t *testing.T) {
	ctx := context.Background()
	st := newFakeStore()
	s := newService(t, st)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	k, err := s.CreateKey(ctx, ops, " laptop ", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))))
	if err != nil || k.Name != "laptop" {
		t.Fatalf("CreateKey: %+v %v", k, err)
	}
	if _, err := s.KeysScript(ctx, ops, nil, false, false); err == nil || !strings.Contains(err.Error(), "no keys") {
		t.Fatalf("no keys: %v", err)
	}
	if _, err := s.KeysScript(ctx, ops, []int64{k.ID, 99}, false, false); err == nil || !strings.Contains(err.Error(), "unknown key id") {
		t.Fatalf("unknown key: %v", err)
	}
	script, err := s.KeysScript(ctx, ops, []int64{k.ID, k.ID}, true, false)
	if err != nil {
		t.Fatal(err)
	}
	id, err := st.CredentialByName(ctx, IdentityCredential)
	if err != nil || !strings.Contains(script, k.PublicKey) || !strings.Contains(script, id.PublicKey) || !strings.Contains(script, "mode=add") {
		t.Fatalf("script without its keys (%v):\n%s", err, script)
	}
	if created, err := s.EnsureIdentity(ctx); err != nil || created {
		t.Errorf("a second identity: %v %v", created, err)
	}
	last := st.audit[len(st.audit)-1]
	if last.Action != "credential.create" || last.Actor != "ops" {
		t.Errorf("identity audit %+v", last)
	}
	if revoke, _ := s.KeysScript(ctx, ops, []int64{k.ID}, false, true); !strings.Contains(revoke, "mode=remove") {
		t.Errorf("revoke script:\n%s", revoke)
	}
}
