package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/testum/testum/libs/testenv"
)

// runSeen runs req on one platform and returns the run, its WebSocket stdout
// and stderr, and the archived log of its host.
func (s *server) runSeen(t *testing.T, id int64, req map[string]any) (state, stdout, stderr, archived, hostErr string) {
	t.Helper()
	req["targets"] = map[string]any{"platform_ids": []int64{id}}
	runID := s.startRun(t, req)
	r := s.waitRun(t, runID)
	msgs := s.wsCollect(t, runID, 0, 0)
	for _, out := range hostOutput(msgs, "stdout") {
		stdout += out
	}
	for _, out := range hostOutput(msgs, "stderr") {
		stderr += out
	}
	for _, out := range hostOutput(msgs, "error") {
		hostErr += out
	}
	if len(r.Hosts) == 1 && r.Hosts[0].State != "" {
		st, body := call(t, "GET", fmt.Sprintf("%s/api/runs/%s/hosts/0/log", s.URL, runID), nil, nil)
		if st == http.StatusOK {
			archived = string(body)
		}
	}
	return r.State, stdout, stderr, archived, hostErr
}

// TestSudoNeverHandsThePasswordToTheCommand: the platform's password goes
// to sudo only when sudo asks with its own prompt. A NOPASSWD sudoer's
// command that reads stdin reads nothing; a password sudoer still becomes
// root (the script body still arrives over stdin); a refused password ends
// the host failed with a clear error instead of hanging; sudo's prompt and
// the success marker never show.
func TestSudoNeverHandsThePasswordToTheCommand(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	nopw, withpw, rootpw := sshd.NewUser(t), sshd.NewUser(t), sshd.NewUser(t)
	sshd.AllowSudoNoPassword(t, nopw)
	sshd.AllowSudo(t, withpw)
	sshd.AllowSudoAskingRootPassword(t, rootpw)
	s := startServe(t, nil)
	platform := func(name string, addr int, u *testenv.User) int64 {
		return s.createPlatform(t, map[string]any{"name": name, "host": sshd.Addr(addr), "port": sshd.Port,
			"username": u.Name, "auth_method": "password", "password": u.Password})
	}
	noPwID, withPwID, rootPwID := platform("nopw01", 660, nopw), platform("withpw01", 661, withpw), platform("rootpw01", 662, rootpw)
	clean := func(t *testing.T, name, password string, texts ...string) {
		t.Helper()
		for _, x := range texts {
			if strings.Contains(x, password) || strings.Contains(x, "testum-sudo") {
				t.Errorf("%s: output shows the password or a sudo marker: %q", name, x)
			}
		}
	}

	for name, req := range map[string]map[string]any{
		"head -1": {"command": "head -1"},
		"cat":     {"command": "cat; id -u"},
		"script":  {"script": map[string]any{"interpreter": "sh", "body": "cat\nid -u"}},
	} {
		req["sudo"] = true
		state, stdout, stderr, archived, hostErr := s.runSeen(t, noPwID, req)
		if state != "succeeded" || !strings.HasSuffix(stdout, "0\n") && name != "head -1" {
			t.Errorf("NOPASSWD %s: %s, stdout %q stderr %q %s", name, state, stdout, stderr, hostErr)
		}
		clean(t, "NOPASSWD "+name, nopw.Password, stdout, stderr, archived, hostErr)
	}

	for name, req := range map[string]map[string]any{
		"command": {"command": "whoami"},
		"script":  {"script": map[string]any{"interpreter": "sh", "body": "whoami\ncat"}},
	} {
		req["sudo"] = true
		state, stdout, stderr, archived, hostErr := s.runSeen(t, withPwID, req)
		if state != "succeeded" || stdout != "root\n" || archived != "root\n" {
			t.Errorf("password sudoer %s: %s, stdout %q stderr %q archived %q %s", name, state, stdout, stderr, archived, hostErr)
		}
		clean(t, "password sudoer "+name, withpw.Password, stdout, stderr, archived, hostErr)
	}

	runID := s.startRun(t, map[string]any{"command": "whoami", "sudo": true, "targets": map[string]any{"platform_ids": []int64{rootPwID}}})
	r := s.waitRun(t, runID)
	if r.State != "failed" || len(r.Hosts) != 1 || r.Hosts[0].State != "failed" || r.Hosts[0].Error != "sudo: the platform's password was refused" {
		t.Fatalf("refused password: %s %+v", r.State, r.Hosts)
	}
	msgs := s.wsCollect(t, runID, 0, 0)
	var all []string
	for _, typ := range []string{"stdout", "stderr", "error"} {
		for _, out := range hostOutput(msgs, typ) {
			all = append(all, out)
		}
	}
	clean(t, "refused", rootpw.Password, all...)
}
