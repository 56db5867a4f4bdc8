package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/ssh"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/testenv"
)

// hostKeys is GET /api/platforms/{id}/host_key.
type hostKeys struct {
	Pinned             string `json:"pinned"`
	PinnedFingerprint  string `json:"pinned_fingerprint"`
	Offered            string `json:"offered"`
	OfferedFingerprint string `json:"offered_fingerprint"`
}

func (s *server) hostKeys(t *testing.T, id int64) hostKeys {
	t.Helper()
	resp, err := s.api.HostKeyGetWithResponse(context.Background(), id)
	checkStatus(t, "host key", err, resp.StatusCode(), http.StatusOK, resp.Body)
	if resp.JSON200 == nil {
		t.Fatalf("host key: %s", resp.Body)
	}
	hk := resp.JSON200
	return hostKeys{Pinned: deref(hk.Pinned), PinnedFingerprint: deref(hk.PinnedFingerprint),
		Offered: deref(hk.Offered), OfferedFingerprint: deref(hk.OfferedFingerprint)}
}

// deref is the value p points to, or the zero value.
func deref[T any](p *T) T {
	var v T
	if p != nil {
		v = *p
	}
	return v
}

func (s *server) acceptOffered(t *testing.T, id int64) {
	t.Helper()
	hk := s.hostKeys(t, id)
	if hk.OfferedFingerprint == "" {
		t.Fatalf("platform %d offers no key to accept: %+v", id, hk)
	}
	resp, err := s.api.HostKeyAcceptWithResponse(context.Background(), id,
		apiclient.HostKeyAcceptRequest{Fingerprint: hk.OfferedFingerprint})
	checkStatus(t, "accept host key", err, resp.StatusCode(), http.StatusOK, resp.Body)
}

// testResult is POST /api/platforms/{id}/test.
type testResult struct {
	OK      bool   `json:"ok"`
	State   string `json:"state"`
	Message string `json:"message"`
}

func (s *server) testPlatform(t *testing.T, id int64) testResult {
	t.Helper()
	resp, err := s.api.PlatformTestWithResponse(context.Background(), id)
	checkStatus(t, "platform test", err, resp.StatusCode(), http.StatusOK, resp.Body)
	if resp.JSON200 == nil {
		t.Fatalf("platform test: %s", resp.Body)
	}
	return testResult{OK: resp.JSON200.Ok, State: string(resp.JSON200.State), Message: resp.JSON200.Message}
}

// sinceLastStart is what an sshd logged since it last started (its log
// marks every start).
func sinceLastStart(sshd *testenv.SSHD) string {
	l := sshd.Log()
	if i := strings.LastIndex(l, "--- testenv: starting sshd"); i >= 0 {
		return l[i:]
	}
	return l
}

func fingerprintOf(t *testing.T, authorizedKey string) string {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		t.Fatalf("stored key %q: %v", authorizedKey, err)
	}
	return sshx.Fingerprint(k)
}

// TestJumpHostKeyPinnedAndChecked: a jump host is pinned on its own platform
// at first contact and checked after; a changed bastion key ends the host
// hostkey_rejected naming the bastion, before its password is sent; the
// offered key is on the bastion's platform, and accepting it there lets the
// next run through. The platform test does the same.
func TestJumpHostKeyPinnedAndChecked(t *testing.T) {
	t.Parallel()
	jumpd, targetd := testenv.StartSSHD(t), testenv.StartSSHD(t)
	s := startServe(t, nil)
	pw := jumpd.PasswordUser
	bastion := s.createPlatform(t, map[string]any{"name": "bastion", "host": jumpd.Addr(300), "port": jumpd.Port,
		"username": pw.Name, "auth_method": "password", "password": pw.Password})
	behind := s.createPlatform(t, map[string]any{"name": "behind", "host": targetd.Addr(301), "port": targetd.Port,
		"username": pw.Name, "auth_method": "password", "password": pw.Password, "jump_platform_id": bastion})
	jumpLogins := func() int { return strings.Count(jumpd.Log(), "Accepted password for") }

	if r := s.runOn(t, "true", behind); hostState(t, r, 0) != "ok" {
		t.Fatalf("first run through the bastion: %+v", (*r.Hosts)[0])
	}
	hk := s.hostKeys(t, bastion)
	if hk.PinnedFingerprint == "" {
		t.Fatal("the bastion's key was not pinned at first contact")
	}
	if !hasKey(jumpd.HostKeys, hk.PinnedFingerprint) || fingerprintOf(t, hk.Pinned) != hk.PinnedFingerprint {
		t.Fatalf("pinned %s is not a key of the bastion", hk.PinnedFingerprint)
	}
	if s.hostKeys(t, behind).PinnedFingerprint == "" {
		t.Fatal("the target's key was not pinned at first contact")
	}

	// The kept connection is keyed on every hop's pinned key: the next run,
	// whose target now carries the bastion's pin, reuses it.
	before := jumpLogins()
	if r := s.runOn(t, "true", behind); hostState(t, r, 0) != "ok" {
		t.Fatalf("second run: %+v", (*r.Hosts)[0])
	}
	if n := jumpLogins() - before; n != 0 {
		t.Fatalf("the second run logged in to the bastion %d more times: the kept connection was not reused", n)
	}

	// The bastion is rebuilt: it presents other keys.
	jumpd.RestartWithNewHostKeys(t)
	r := s.runOn(t, "true", behind)
	h := (*r.Hosts)[0]
	if h.State != "hostkey_rejected" {
		t.Fatalf("changed bastion key: %+v", h)
	}
	for _, want := range []string{"jump " + jumpd.Addr(300), "host key changed", "bastion"} {
		if !strings.Contains(val(h.Error), want) {
			t.Errorf("error %q does not name %q", val(h.Error), want)
		}
	}
	if l := sinceLastStart(jumpd); strings.Contains(l, "Accepted password") || strings.Contains(l, "Failed password") {
		t.Fatalf("a password was sent to the bastion with the changed key:\n%s", l)
	}
	hk = s.hostKeys(t, bastion)
	if hk.OfferedFingerprint == "" || hk.OfferedFingerprint == hk.PinnedFingerprint || !hasKey(jumpd.HostKeys, hk.OfferedFingerprint) {
		t.Fatalf("the bastion's platform shows no new offered key: %+v", hk)
	}
	if off := s.hostKeys(t, behind).OfferedFingerprint; off != "" {
		t.Fatalf("the bastion's key was offered on the target's platform: %s", off)
	}
	bp, err := s.api.PlatformGetWithResponse(context.Background(), bastion)
	checkStatus(t, "get bastion", err, bp.StatusCode(), http.StatusOK, bp.Body)
	if bp.JSON200 == nil || bp.JSON200.State != "hostkey_rejected" {
		t.Errorf("the bastion is not hostkey_rejected: %s", bp.Body)
	}

	// The platform test of the target says the same, without a password.
	if res := s.testPlatform(t, behind); res.OK || res.State != "hostkey_rejected" || !strings.Contains(res.Message, "jump "+jumpd.Addr(300)) {
		t.Fatalf("platform test through the changed bastion: %+v", res)
	}
	if l := sinceLastStart(jumpd); strings.Contains(l, "Accepted password") {
		t.Fatalf("the platform test sent a password to the changed bastion:\n%s", l)
	}

	s.acceptOffered(t, bastion)
	if r := s.runOn(t, "true", behind); hostState(t, r, 0) != "ok" {
		t.Fatalf("after accepting the bastion's new key: %+v", (*r.Hosts)[0])
	}
	if l := sinceLastStart(jumpd); !strings.Contains(l, "Accepted password") {
		t.Fatal("the run after the accept did not log in to the bastion: the log check above proves nothing")
	}

	// A platform test pins an unknown jump host too.
	other := s.createPlatform(t, map[string]any{"name": "bastion-2", "host": jumpd.Addr(302), "port": jumpd.Port,
		"username": pw.Name, "auth_method": "password", "password": pw.Password})
	behind2 := s.createPlatform(t, map[string]any{"name": "behind-2", "host": targetd.Addr(303), "port": targetd.Port,
		"username": pw.Name, "auth_method": "password", "password": pw.Password, "jump_platform_id": other})
	if res := s.testPlatform(t, behind2); !res.OK {
		t.Fatalf("platform test through a new bastion: %+v", res)
	}
	if s.hostKeys(t, other).PinnedFingerprint == "" {
		t.Fatal("the platform test did not pin the jump host")
	}
	jumpd.RestartWithNewHostKeys(t)
	if res := s.testPlatform(t, behind2); res.OK || res.State != "hostkey_rejected" || !strings.Contains(res.Message, "bastion-2") {
		t.Fatalf("platform test, changed bastion: %+v", res)
	}
	if s.hostKeys(t, other).OfferedFingerprint == "" {
		t.Fatal("the platform test did not record the bastion's offered key on its platform")
	}
	s.acceptOffered(t, other)
	if res := s.testPlatform(t, behind2); !res.OK {
		t.Fatalf("platform test after accepting the bastion's key: %+v", res)
	}
}

// TestStrictPolicyCoversJumpHosts: under SSH_HOST_KEY_POLICY=strict an
// unpinned jump host is refused, even when its target may be pinned on
// first contact, until its offered key is accepted.
func TestStrictPolicyCoversJumpHosts(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, map[string]string{"SSH_HOST_KEY_POLICY": "strict"})
	pw := sshd.PasswordUser
	bastion := s.createPlatform(t, map[string]any{"name": "bastion", "host": sshd.Addr(310), "port": sshd.Port,
		"username": pw.Name, "auth_method": "password", "password": pw.Password})
	behind := s.createPlatform(t, map[string]any{"name": "behind", "host": sshd.Addr(311), "port": sshd.Port,
		"username": pw.Name, "auth_method": "password", "password": pw.Password, "jump_platform_id": bastion,
		"host_key_policy": "auto_add"})

	if res := s.testPlatform(t, behind); res.OK || res.State != "hostkey_rejected" || !strings.Contains(res.Message, "jump "+sshd.Addr(310)) {
		t.Fatalf("platform test, unpinned bastion under strict: %+v", res)
	}
	r := s.runOn(t, "true", behind)
	if h := (*r.Hosts)[0]; h.State != "hostkey_rejected" || !strings.Contains(val(h.Error), "strict") || !strings.Contains(val(h.Error), "bastion") {
		t.Fatalf("run, unpinned bastion under strict: %+v", h)
	}
	if hk := s.hostKeys(t, bastion); hk.PinnedFingerprint != "" || hk.OfferedFingerprint == "" {
		t.Fatalf("bastion under strict: %+v, want nothing pinned and the key offered", hk)
	}
	s.acceptOffered(t, bastion)
	if r := s.runOn(t, "true", behind); hostState(t, r, 0) != "ok" {
		t.Fatalf("after accepting the bastion under strict: %+v", (*r.Hosts)[0])
	}
}

// TestTargetPolicy: platforms in a denied range are refused at the API, and
// a platform that got there anyway (created before the policy changed, or a
// name that resolves there) ends unreachable without being dialed.
func TestTargetPolicy(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	pw := sshd.PasswordUser
	t.Run("default", func(t *testing.T) {
		s := startServe(t, nil)
		for _, host := range []string{"169.254.169.254", "169.254.1.1", "fd00:ec2::254"} {
			resp, err := s.api.PlatformCreateWithBodyWithResponse(context.Background(), "application/json", jsonBody(t, map[string]any{"name": "meta", "host": host,
				"username": "u", "auth_method": "password", "password": "p"}))
			if err != nil {
				t.Fatal(err)
			}
			if resp.JSON400 == nil || !strings.Contains(resp.JSON400.Error, "target policy") || resp.JSON400.Code != apiclient.ErrorCodeTargetDenied {
				t.Errorf("platform at %s: %d %s", host, resp.StatusCode(), resp.Body)
			}
		}
		id := s.createPlatform(t, map[string]any{"name": "ok", "host": sshd.Addr(320), "port": sshd.Port,
			"username": pw.Name, "auth_method": "password", "password": pw.Password})
		up, err := s.api.PlatformUpdateWithBodyWithResponse(context.Background(), id, "application/json", jsonBody(t, map[string]any{"name": "ok", "host": "169.254.169.254",
			"port": sshd.Port, "username": pw.Name, "auth_method": "password", "password": pw.Password}))
		if err != nil {
			t.Fatal(err)
		}
		if up.JSON400 == nil || !strings.Contains(up.JSON400.Error, "target policy") {
			t.Errorf("update to the metadata address: %d %s", up.StatusCode(), up.Body)
		}
		im, err := s.api.PlatformImportWithBodyWithResponse(context.Background(), "application/json", jsonBody(t, map[string]any{"format": "ssh_config",
			"content": "Host meta\n    HostName 169.254.169.254\n    User u\n", "auth_method": "password", "password": "p"}))
		checkStatus(t, "import", err, im.StatusCode(), http.StatusOK, im.Body)
		if res := im.JSON200; res == nil || res.Created != 0 || res.Items == nil || len(*res.Items) != 1 ||
			(*res.Items)[0].Result != "rejected" || !strings.Contains(deref((*res.Items)[0].Reason), "target policy") {
			t.Errorf("import of the metadata address: %s", im.Body)
		}
	})
	t.Run("configured", func(t *testing.T) {
		s := startServe(t, map[string]string{"TESTUM_TARGET_DENY": "127.0.0.5/32, 127.0.0.1/32, ::1/128"})
		denied, err := s.api.PlatformCreateWithBodyWithResponse(context.Background(), "application/json", jsonBody(t, map[string]any{"name": "denied", "host": "127.0.0.5", "port": sshd.Port,
			"username": pw.Name, "auth_method": "password", "password": pw.Password}))
		if err != nil {
			t.Fatal(err)
		}
		if denied.JSON400 == nil || !strings.Contains(denied.JSON400.Error, "127.0.0.5/32") {
			t.Fatalf("platform at a denied address: %d %s", denied.StatusCode(), denied.Body)
		}
		// The setting replaces the default: the metadata range is allowed now
		// (creating is enough, nothing dials it).
		s.createPlatform(t, map[string]any{"name": "meta", "host": "169.254.169.254", "username": "u", "auth_method": "password", "password": "p"})

		mk := func(name, host string) int64 {
			return s.createPlatform(t, map[string]any{"name": name, "host": host, "port": sshd.Port,
				"username": pw.Name, "auth_method": "password", "password": pw.Password})
		}
		allowed := mk("allowed", "127.0.0.6")
		before := mk("before", "127.0.0.7")
		byName := mk("by-name", "localhost") // a name: judged when it is resolved
		// "before" moves into the denied range behind the API's back, as a
		// platform created before the policy changed.
		conn, err := pgx.Connect(context.Background(), s.DB)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "UPDATE platforms SET host = '127.0.0.5' WHERE id = $1", before); err != nil {
			t.Fatal(err)
		}
		r := s.runOn(t, "true", allowed, before, byName)
		for _, h := range hostsOf(r) {
			switch h.Name {
			case "allowed":
				if h.State != "ok" {
					t.Errorf("allowed loopback address: %+v", h)
				}
			default:
				if h.State != "unreachable" || !strings.Contains(val(h.Error), "denied by the target policy") || !strings.Contains(val(h.Error), "not dialed") {
					t.Errorf("%s: %+v, want unreachable by the target policy", h.Name, h)
				}
			}
		}
		if res := s.testPlatform(t, before); res.OK || !strings.Contains(res.Message, "denied by the target policy") {
			t.Errorf("platform test of a denied address: %+v", res)
		}
	})
	t.Run("bad setting", func(t *testing.T) {
		env := map[string]string{"TESTUM_DATA_DIR": t.TempDir(), "TESTUM_TARGET_DENY": "10.0.0.0/33"}
		err := run(context.Background(), []string{"serve"}, func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "TESTUM_TARGET_DENY") {
			t.Fatalf("serve with a bad TESTUM_TARGET_DENY: %v", err)
		}
	})
}

func hasKey(keys []ssh.PublicKey, fingerprint string) bool {
	for _, k := range keys {
		if sshx.Fingerprint(k) == fingerprint {
			return true
		}
	}
	return false
}
