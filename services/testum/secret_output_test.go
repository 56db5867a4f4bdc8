package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/secrets"
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
	if len(hostsOf(r)) == 1 && (*r.Hosts)[0].State != "" {
		resp, err := s.api.RunHostLogWithResponse(context.Background(), parseRunID(t, runID), 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode() == http.StatusOK {
			archived = string(resp.Body)
		}
	}
	return string(r.State), stdout, stderr, archived, hostErr
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

	for name, tc := range map[string]struct {
		req  map[string]any
		want string
	}{
		"head -1": {map[string]any{"command": "head -1"}, ""},
		"cat":     {map[string]any{"command": "cat; id -u"}, "0\n"},
		"script":  {map[string]any{"script": map[string]any{"interpreter": "sh", "body": "cat\nid -u"}}, "0\n"},
	} {
		tc.req["sudo"] = true
		state, stdout, stderr, archived, hostErr := s.runSeen(t, noPwID, tc.req)
		if state != "succeeded" || stdout != tc.want {
			t.Errorf("NOPASSWD %s: %s, stdout %q (want %q) stderr %q %s", name, state, stdout, tc.want, stderr, hostErr)
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
	if r.State != "failed" || len(hostsOf(r)) != 1 || (*r.Hosts)[0].State != "failed" || val((*r.Hosts)[0].Error) != "sudo: the platform's password was refused" {
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

// TestSudoIgnoresAPromptTheCommandPrints: a NOPASSWD sudoer's command can
// read sudo's prompt from its ancestors' command lines (sudo -S -p ...) and
// print it on stderr right after the root shell's success marker. stdout
// and stderr reach the executor as two unordered streams, so with the
// marker on stdout the fake prompt could be seen first and answered with
// the platform's password, which the command then read from stdin. Both
// markers share stderr now: the command must read nothing. The old bug was
// a race, so this runs a few times; the command says "found" when it found
// the prompt, so each run really tries.
func TestSudoIgnoresAPromptTheCommandPrints(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	nopw := sshd.NewUser(t)
	sshd.AllowSudoNoPassword(t, nopw)
	s := startServe(t, nil)
	id := s.createPlatform(t, map[string]any{"name": "nopwfake01", "host": sshd.Addr(663), "port": sshd.Port,
		"username": nopw.Name, "auth_method": "password", "password": nopw.Password})
	// Walk up at most 5 ancestors (sudo is the root shell's parent on this
	// host; a sudo with a pty has a monitor in between), print the prompt
	// on stderr, then show what stdin gives, in hex so that the masking of
	// the password in output cannot hide it.
	const cmd = `p=$$; i=0; f=
while [ $i -lt 5 ] && [ -z "$f" ] && [ "$p" -gt 1 ]; do
  p=$(awk '/^PPid:/ {print $2}' /proc/$p/status)
  f=$(tr '\0' ' ' < /proc/$p/cmdline | grep -o 'testum-sudo-prompt-[0-9a-f]*:' | head -1)
  i=$((i+1))
done
[ -n "$f" ] && echo found
printf '%s' "$f" >&2
echo "stdin:$(head -c 200 | od -An -tx1 | tr -d ' \n')"`
	for run := range 5 {
		state, stdout, stderr, archived, hostErr := s.runSeen(t, id, map[string]any{"command": cmd, "sudo": true})
		if state != "succeeded" || stdout != "found\nstdin:\n" {
			t.Fatalf("run %d: %s, stdout %q (want the prompt found and nothing on stdin) stderr %q %s", run, state, stdout, stderr, hostErr)
		}
		if !strings.HasPrefix(stderr, "testum-sudo-prompt-") {
			t.Fatalf("run %d: stderr %q, want the printed prompt passed on", run, stderr)
		}
		for _, x := range []string{stdout, stderr, archived, hostErr} {
			if strings.Contains(x, nopw.Password) || strings.Contains(x, "********") || strings.Contains(x, "testum-sudo-ok-") {
				t.Fatalf("run %d: output shows the password or the success marker: %q", run, x)
			}
		}
	}
}

// outputEverywhere is a run's output as the WebSocket, the archived log and
// the summary show it.
func (s *server) outputEverywhere(t *testing.T, runID string) (ws, archived, summary string) {
	t.Helper()
	for _, m := range s.wsCollect(t, runID, 0, 0) {
		if m.Type == "stdout" || m.Type == "stderr" || m.Type == "error" {
			ws += m.Payload
		}
	}
	ctx, id := context.Background(), parseRunID(t, runID)
	hl, err := s.api.RunHostLogWithResponse(ctx, id, 0, nil)
	checkStatus(t, "host log", err, hl.StatusCode(), http.StatusOK, hl.Body)
	archived = string(hl.Body)
	sum, err := s.api.RunSummaryWithResponse(ctx, id)
	checkStatus(t, "summary", err, sum.StatusCode(), http.StatusOK, sum.Body)
	if sum.JSON200 == nil || sum.JSON200.Groups == nil {
		t.Fatalf("summary: %s", sum.Body)
	}
	for _, g := range *sum.JSON200.Groups {
		summary += deref(g.Output)
	}
	return ws, archived, summary
}

// TestKnownSecretsAreMaskedInOutput: the platform's password and a secret
// env value printed by the command read ******** on the WebSocket, in the
// archived log and in the summary, also when written in two pieces (two
// printf calls are two writes) on stdout and on stderr.
func TestKnownSecretsAreMaskedInOutput(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	ids := s.fleet(t, sshd, "mask", 1, 670, nil)
	pw := sshd.PasswordUser.Password
	const token = "tok-9f8e7d6c5b4a"
	half := len(pw) / 2
	cmd := fmt.Sprintf(`printf 'pw=%%s' '%s'; printf '%%s;\n' '%s'; printf '%%s' '%s' >&2; printf '%%s\n' '%s' >&2; echo "token=$TOKEN"; echo short=abc`,
		pw[:half], pw[half:], pw[:half], pw[half:])
	runID := s.startRun(t, map[string]any{"command": cmd, "env": map[string]any{"TOKEN": map[string]any{"value": token, "secret": true}},
		"targets": map[string]any{"platform_ids": ids}})
	if r := s.waitRun(t, runID); r.State != "succeeded" {
		t.Fatalf("run %s: %+v", r.State, r.Hosts)
	}
	ws, archived, summary := s.outputEverywhere(t, runID)
	// stdout and stderr reach the transcript in no fixed order relative to
	// each other, so the split secrets are looked for in each stream alone.
	streams := map[string]string{}
	for _, m := range s.wsCollect(t, runID, 0, 0) {
		streams[string(m.Type)] += m.Payload
	}
	if got := streams["stdout"]; got != "pw=********;\ntoken=********\nshort=abc\n" {
		t.Errorf("stdout over the websocket: %q", got)
	}
	if got := streams["stderr"]; got != "********\n" {
		t.Errorf("stderr over the websocket: %q", got)
	}
	for where, out := range map[string]string{"websocket": ws, "archive": archived, "summary": summary} {
		if strings.Contains(out, pw) || strings.Contains(out, token) {
			t.Errorf("%s shows a secret: %q", where, out)
		}
		for _, want := range []string{"token=********\n", "short=abc\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: %q lacks %q", where, out, want)
			}
		}
		if strings.Count(out, "********") != 3 {
			t.Errorf("%s: %q: want three masks", where, out)
		}
	}
}

// TestSecretEnvIsSealedAndMasked: an env value marked secret reaches the
// command (which compares its hash), is in no table of PostgreSQL in
// plaintext, reads ******** in the run's API answers and the audit log, and
// a rerun still gets it. The plain string form keeps working.
func TestSecretEnvIsSealedAndMasked(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	ids := s.fleet(t, sshd, "senv", 1, 680, nil)
	const token = "s3cr3t-T0ken-value-4711"
	sum := sha256.Sum256([]byte(token))
	cmd := fmt.Sprintf(`test "$(printf %%s "$TOKEN" | sha256sum | cut -c1-64)" = %x && test "$PLAIN" = visible && echo "got $TOKEN"`, sum)
	runID := s.startRun(t, map[string]any{"command": cmd, "targets": map[string]any{"platform_ids": ids},
		"env": map[string]any{"PLAIN": "visible", "TOKEN": map[string]any{"value": token, "secret": true}}})
	r := s.waitRun(t, runID)
	if r.State != "succeeded" {
		t.Fatalf("the command did not get the secret: %s %+v", r.State, r.Hosts)
	}
	if (*r.Env)["TOKEN"] != "********" || (*r.Env)["PLAIN"] != "visible" {
		t.Errorf("env in the API: %v", r.Env)
	}
	if out := hostOutput(s.wsCollect(t, runID, 0, 0), "stdout")["senv01"]; out != "got ********\n" {
		t.Errorf("output %q", out)
	}

	rerunID := s.rerunAll(t, runID)
	if r := s.waitRun(t, rerunID); r.State != "succeeded" || (*r.Env)["TOKEN"] != "********" {
		t.Fatalf("rerun: %s %v %+v", r.State, r.Env, r.Hosts)
	}

	ctx := context.Background()
	for u, get := range map[string]func() ([]byte, int, error){
		"/api/runs/" + runID: func() ([]byte, int, error) {
			r, err := s.api.RunGetWithResponse(ctx, parseRunID(t, runID))
			return r.Body, r.StatusCode(), err
		},
		"/api/runs/" + rerunID: func() ([]byte, int, error) {
			r, err := s.api.RunGetWithResponse(ctx, parseRunID(t, rerunID))
			return r.Body, r.StatusCode(), err
		},
		"/api/runs": func() ([]byte, int, error) {
			r, err := s.api.RunListWithResponse(ctx, nil)
			return r.Body, r.StatusCode(), err
		},
		"/api/audit": func() ([]byte, int, error) {
			r, err := s.api.AuditListWithResponse(ctx, nil)
			return r.Body, r.StatusCode(), err
		},
	} {
		body, status, err := get()
		checkStatus(t, "GET "+u, err, status, http.StatusOK, body)
		if strings.Contains(string(body), token) {
			t.Errorf("GET %s shows the secret: %s", u, body)
		}
	}
	conn, err := pgx.Connect(ctx, s.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, table := range []string{"runs", "run_hosts", "audit_log", "run_secret_env"} {
		var n, leaks int
		q := fmt.Sprintf("SELECT count(*), count(*) FILTER (WHERE t::text LIKE '%%' || $1 || '%%' OR t::text LIKE '%%' || $2 || '%%') FROM %s t", table)
		if err := conn.QueryRow(ctx, q, token, fmt.Sprintf("%x", token)).Scan(&n, &leaks); err != nil {
			t.Fatal(err)
		}
		if leaks != 0 || n == 0 {
			t.Errorf("%s: %d of %d rows hold the secret in plaintext", table, leaks, n)
		}
	}
	if strings.Contains(dumpDatabase(t, s.DB), token) {
		t.Error("a table holds the secret in plaintext")
	}
	var sealed int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM run_secret_env").Scan(&sealed); err != nil || sealed != 2 {
		t.Errorf("sealed secret env rows: %d %v", sealed, err)
	}

	bad, err := s.api.RunCreateWithBodyWithResponse(ctx, "application/json", jsonBody(t, map[string]any{"command": "true", "targets": map[string]any{"platform_ids": ids},
		"env": map[string]any{"TOKEN": 5}}))
	if err != nil {
		t.Fatal(err)
	}
	if bad.JSON400 == nil || bad.JSON400.Error == "" {
		t.Errorf("an env value that is neither a string nor an object: %d %s", bad.StatusCode(), bad.Body)
	}
}

// TestSecretEnvSurvivesKeyRotation: testum secrets rotate re-encrypts the
// runs' secret env too, so a rerun works once only the new key is left.
func TestSecretEnvSurvivesKeyRotation(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	oldKey, _ := secrets.GenerateKey()
	env := map[string]string{"DATABASE_URL": testenv.Postgres(t), "FERNET_KEY": oldKey, "SECRET_KEY": "rotation-secret-key-0123456789abcdef01"}
	s := startServe(t, env)
	ids := s.fleet(t, sshd, "rot", 1, 690, nil)
	runID := s.startRun(t, map[string]any{"command": `test "$TOKEN" = rotated-token-x`, "targets": map[string]any{"platform_ids": ids},
		"env": map[string]any{"TOKEN": map[string]any{"value": "rotated-token-x", "secret": true}}})
	if r := s.waitRun(t, runID); r.State != "succeeded" {
		t.Fatalf("run: %s %+v", r.State, r.Hosts)
	}

	newKey, _ := secrets.GenerateKey()
	renv := map[string]string{"DATABASE_URL": env["DATABASE_URL"], "FERNET_KEY": newKey + "," + oldKey}
	var out strings.Builder
	if err := run(context.Background(), []string{"secrets", "rotate"}, func(k string) string { return renv[k] }, strings.NewReader(""), &out, &out); err != nil {
		t.Fatalf("rotate: %v %s", err, out.String())
	}
	if !strings.Contains(out.String(), "1 runs' secret env checked, 1 re-encrypted") {
		t.Fatalf("rotate said %q", out.String())
	}
	s2 := startServe(t, map[string]string{"DATABASE_URL": env["DATABASE_URL"], "FERNET_KEY": newKey, "SECRET_KEY": env["SECRET_KEY"]})
	if r := s2.waitRun(t, s2.rerunAll(t, runID)); r.State != "succeeded" {
		t.Fatalf("rerun after rotation: %s %+v", r.State, r.Hosts)
	}
}

// rerunAll re-runs every host of a run and returns the new run's id.
func (s *server) rerunAll(t *testing.T, runID string) string {
	t.Helper()
	all := apiclient.RerunRequestOnlyAll
	resp, err := s.api.RunRerunWithResponse(context.Background(), parseRunID(t, runID), apiclient.RerunRequest{Only: &all})
	checkStatus(t, "rerun", err, resp.StatusCode(), http.StatusCreated, resp.Body)
	if resp.JSON201 == nil {
		t.Fatalf("rerun: %s", resp.Body)
	}
	return resp.JSON201.Id.String()
}
