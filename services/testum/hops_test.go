package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/api"
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
	var hk hostKeys
	mustCall(t, http.StatusOK, "GET", fmt.Sprintf("%s/api/platforms/%d/host_key", s.URL, id), nil, &hk)
	return hk
}

func (s *server) acceptOffered(t *testing.T, id int64) {
	t.Helper()
	hk := s.hostKeys(t, id)
	if hk.OfferedFingerprint == "" {
		t.Fatalf("platform %d offers no key to accept: %+v", id, hk)
	}
	mustCall(t, http.StatusOK, "POST", fmt.Sprintf("%s/api/platforms/%d/host_key/accept", s.URL, id),
		map[string]string{"fingerprint": hk.OfferedFingerprint}, nil)
}

// testResult is POST /api/platforms/{id}/test.
type testResult struct {
	OK      bool   `json:"ok"`
	State   string `json:"state"`
	Message string `json:"message"`
}

func (s *server) testPlatform(t *testing.T, id int64) testResult {
	t.Helper()
	var res testResult
	mustCall(t, http.StatusOK, "POST", fmt.Sprintf("%s/api/platforms/%d/test", s.URL, id), nil, &res)
	return res
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
		t.Fatalf("first run through the bastion: %+v", r.Hosts[0])
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
		t.Fatalf("second run: %+v", r.Hosts[0])
	}
	if n := jumpLogins() - before; n != 0 {
		t.Fatalf("the second run logged in to the bastion %d more times: the kept connection was not reused", n)
	}

	// The bastion is rebuilt: it presents other keys.
	jumpd.RestartWithNewHostKeys(t)
	r := s.runOn(t, "true", behind)
	h := r.Hosts[0]
	if h.State != "hostkey_rejected" {
		t.Fatalf("changed bastion key: %+v", h)
	}
	for _, want := range []string{"jump " + jumpd.Addr(300), "host key changed", "bastion"} {
		if !strings.Contains(h.Error, want) {
			t.Errorf("error %q does not name %q", h.Error, want)
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
	var bp api.Platform
	mustCall(t, http.StatusOK, "GET", fmt.Sprintf("%s/api/platforms/%d", s.URL, bastion), nil, &bp)
	if bp.State != "hostkey_rejected" {
		t.Errorf("the bastion's state is %q, want hostkey_rejected", bp.State)
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
		t.Fatalf("after accepting the bastion's new key: %+v", r.Hosts[0])
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
	if h := r.Hosts[0]; h.State != "hostkey_rejected" || !strings.Contains(h.Error, "strict") || !strings.Contains(h.Error, "bastion") {
		t.Fatalf("run, unpinned bastion under strict: %+v", h)
	}
	if hk := s.hostKeys(t, bastion); hk.PinnedFingerprint != "" || hk.OfferedFingerprint == "" {
		t.Fatalf("bastion under strict: %+v, want nothing pinned and the key offered", hk)
	}
	s.acceptOffered(t, bastion)
	if r := s.runOn(t, "true", behind); hostState(t, r, 0) != "ok" {
		t.Fatalf("after accepting the bastion under strict: %+v", r.Hosts[0])
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
			st, body := call(t, "POST", s.URL+"/api/platforms/", map[string]any{"name": "meta", "host": host,
				"username": "u", "auth_method": "password", "password": "p"}, nil)
			if st != http.StatusBadRequest || !strings.Contains(string(body), "target policy") || !strings.Contains(string(body), `"code":"target_denied"`) {
				t.Errorf("platform at %s: %d %s", host, st, body)
			}
		}
		id := s.createPlatform(t, map[string]any{"name": "ok", "host": sshd.Addr(320), "port": sshd.Port,
			"username": pw.Name, "auth_method": "password", "password": pw.Password})
		st, body := call(t, "PUT", fmt.Sprintf("%s/api/platforms/%d", s.URL, id), map[string]any{"name": "ok", "host": "169.254.169.254",
			"port": sshd.Port, "username": pw.Name, "auth_method": "password", "password": pw.Password}, nil)
		if st != http.StatusBadRequest || !strings.Contains(string(body), "target policy") {
			t.Errorf("update to the metadata address: %d %s", st, body)
		}
		var res struct {
			Created int                                     `json:"created"`
			Items   []struct{ Name, Result, Reason string } `json:"items"`
		}
		mustCall(t, http.StatusOK, "POST", s.URL+"/api/platforms/import", map[string]any{"format": "ssh_config",
			"content": "Host meta\n    HostName 169.254.169.254\n    User u\n", "auth_method": "password", "password": "p"}, &res)
		if res.Created != 0 || len(res.Items) != 1 || res.Items[0].Result != "rejected" || !strings.Contains(res.Items[0].Reason, "target policy") {
			t.Errorf("import of the metadata address: %+v", res)
		}
	})
	t.Run("configured", func(t *testing.T) {
		s := startServe(t, map[string]string{"TESTUM_TARGET_DENY": "127.0.0.5/32, 127.0.0.1/32, ::1/128"})
		st, body := call(t, "POST", s.URL+"/api/platforms/", map[string]any{"name": "denied", "host": "127.0.0.5", "port": sshd.Port,
			"username": pw.Name, "auth_method": "password", "password": pw.Password}, nil)
		if st != http.StatusBadRequest || !strings.Contains(string(body), "127.0.0.5/32") {
			t.Fatalf("platform at a denied address: %d %s", st, body)
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
		for _, h := range r.Hosts {
			switch h.Name {
			case "allowed":
				if h.State != "ok" {
					t.Errorf("allowed loopback address: %+v", h)
				}
			default:
				if h.State != "unreachable" || !strings.Contains(h.Error, "denied by the target policy") || !strings.Contains(h.Error, "not dialed") {
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
