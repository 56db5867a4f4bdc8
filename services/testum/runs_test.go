package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/logstore"
	"github.com/testum/testum/libs/logstore/logstoretest"
	"github.com/testum/testum/libs/testenv"
)

// fleet registers n password hosts named prefix+NN from address base on.
func (s *server) fleet(t *testing.T, sshd *testenv.SSHD, prefix string, n, base int, labels map[string]string) []int64 {
	t.Helper()
	var ids []int64
	for i := range n {
		ids = append(ids, s.createPlatform(t, map[string]any{"name": fmt.Sprintf("%s%02d", prefix, i+1),
			"host": sshd.Addr(base + i), "port": sshd.Port, "username": sshd.PasswordUser.Name,
			"auth_method": "password", "password": sshd.PasswordUser.Password, "labels": labels}))
	}
	return ids
}

func (s *server) runCount(t *testing.T) int {
	t.Helper()
	limit := 1
	resp, err := s.api.RunListWithResponse(context.Background(), &apiclient.RunListParams{Limit: &limit})
	checkStatus(t, "list runs", err, resp.StatusCode(), http.StatusOK, resp.Body)
	if resp.Headers200 == nil || resp.Headers200.XTotalCount == nil {
		t.Fatalf("list runs: no X-Total-Count")
	}
	return *resp.Headers200.XTotalCount
}

func names(r apiclient.Run) []string {
	var out []string
	for _, h := range hostsOf(r) {
		out = append(out, h.Name)
	}
	return out
}

func TestTargetingAndBadInput(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	s.fleet(t, sshd, "web", 4, 300, map[string]string{"role": "web", "env": "prod"})
	s.fleet(t, sshd, "db", 2, 310, map[string]string{"role": "db", "env": "prod"})

	byLabel := s.waitRun(t, s.startRun(t, map[string]any{"command": "true", "targets": map[string]any{"labels": "role=web"}}))
	if got := fmt.Sprint(names(byLabel)); got != "[web01 web02 web03 web04]" || byLabel.State != "succeeded" {
		t.Fatalf("labels role=web: %s %s", got, byLabel.State)
	}
	byExpr := s.waitRun(t, s.startRun(t, map[string]any{"command": "true", "targets": map[string]any{"hosts": "web[01-04],db01,!web[02-03]"}}))
	if got := fmt.Sprint(names(byExpr)); got != "[web01 web04 db01]" {
		t.Fatalf("expression: %s", got)
	}
	prod := "env=prod"
	pv, err := s.api.RunPreviewWithResponse(context.Background(), apiclient.Targets{Labels: &prod})
	checkStatus(t, "preview", err, pv.StatusCode(), http.StatusOK, pv.Body)
	if pv.JSON200 == nil || pv.JSON200.Count != 6 || pv.JSON200.Hosts != "db[01-02],web[01-04]" {
		t.Fatalf("preview: %s", pv.Body)
	}

	before := s.runCount(t)
	for name, req := range map[string]map[string]any{
		"empty targets":       {"command": "true", "targets": map[string]any{}},
		"expression":          {"command": "true", "targets": map[string]any{"hosts": "web[5-1]"}},
		"unknown host":        {"command": "true", "targets": map[string]any{"hosts": "nosuch01"}},
		"no label match":      {"command": "true", "targets": map[string]any{"labels": "role=cache"}},
		"batch 0":             {"command": "true", "batch": 0, "targets": map[string]any{"labels": "role=web"}},
		"threshold over 100%": {"command": "true", "max_failures": "150%", "targets": map[string]any{"labels": "role=web"}},
		"unknown interpreter": {"script": map[string]any{"interpreter": "cobol", "body": "x"}, "targets": map[string]any{"labels": "role=web"}},
		"bad env name":        {"command": "true", "env": map[string]string{"1X": "y"}, "targets": map[string]any{"labels": "role=web"}},
	} {
		resp, err := s.api.RunCreateWithBodyWithResponse(context.Background(), "application/json", jsonBody(t, req))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if resp.StatusCode() != http.StatusBadRequest || resp.JSON400 == nil || resp.JSON400.Error == "" {
			t.Errorf("%s: %d %s", name, resp.StatusCode(), resp.Body)
		}
	}
	if after := s.runCount(t); after != before {
		t.Fatalf("bad requests created %d runs", after-before)
	}
}

func TestScriptsWithArgumentsAndEnvironment(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	ids := s.fleet(t, sshd, "s", 2, 320, nil)
	for _, tc := range []struct{ interp, body, want string }{
		{"bash", `echo "bash $1/$2 $GREETING $(pwd) ${BASH_VERSION:+yes}"`, "bash a b/c hello /tmp yes\n"},
		{"python3", "import os, sys\nprint('py', '/'.join(sys.argv[1:]), os.environ['GREETING'], os.getcwd())", "py a b/c hello /tmp\n"},
	} {
		runID := s.startRun(t, map[string]any{"script": map[string]any{"interpreter": tc.interp, "body": tc.body, "args": []string{"a b", "c"}},
			"env": map[string]string{"GREETING": "hello"}, "dir": "/tmp", "targets": map[string]any{"platform_ids": ids}})
		r := s.waitRun(t, runID)
		if r.State != "succeeded" {
			t.Fatalf("%s: %s %+v", tc.interp, r.State, r.Hosts)
		}
		for host, out := range hostOutput(s.wsCollect(t, runID, 0, 0), "stdout") {
			if out != tc.want {
				t.Errorf("%s on %s: %q, want %q", tc.interp, host, out, tc.want)
			}
		}
	}
}

// concurrencyProbe makes each host count itself in and out of a shared
// counter on the machine (all hosts are this machine), recording the
// highest count: how many hosts really ran at once.
const concurrencyProbe = `d=%s
enter() { flock "$d/lock" sh -c 'n=$(($(cat "$1/n") + 1)); echo $n > "$1/n"; echo $n >> "$1/max"' _ "$d"; }
leave() { flock "$d/lock" sh -c 'echo $(($(cat "$1/n") - 1)) > "$1/n"' _ "$d"; }
enter; sleep 0.4; leave`

func TestBatchesBoundWhatRunsAtOnce(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, map[string]string{"TESTUM_MAX_HANDSHAKES": "16"})
	ids := s.fleet(t, sshd, "b", 50, 330, nil)
	dir := filepath.Join(sshd.PasswordUser.Home, "probe-"+strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	_ = os.Chmod(dir, 0o777)
	if err := os.WriteFile(filepath.Join(dir, "n"), []byte("0\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(filepath.Join(dir, "n"), 0o666)
	r := s.waitRun(t, s.startRun(t, map[string]any{"command": fmt.Sprintf(concurrencyProbe, dir), "batch": 10,
		"parallelism": 50, "targets": map[string]any{"platform_ids": ids}}))
	if r.State != "succeeded" || (*r.Counts)["ok"] != 50 {
		t.Fatalf("run %s %+v", r.State, r.Counts)
	}
	data, err := os.ReadFile(filepath.Join(dir, "max"))
	if err != nil {
		t.Fatal(err)
	}
	peak := 0
	for _, f := range strings.Fields(string(data)) {
		n, _ := strconv.Atoi(f)
		peak = max(peak, n)
	}
	t.Logf("at most %d hosts ran at once (batch 10)", peak)
	if peak > 10 || peak < 2 {
		t.Fatalf("peak concurrency %d with batch 10", peak)
	}
}

func TestFailureThresholdAborts(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	ids := s.fleet(t, sshd, "f", 20, 390, nil)
	var failing []string
	for i := range 5 {
		failing = append(failing, sshd.Addr(390+i))
	}
	cmd := fmt.Sprintf(`ip=$(echo $SSH_CONNECTION | cut -d' ' -f3); case "$ip" in %s) exit 1;; esac`, strings.Join(failing, "|"))
	r := s.waitRun(t, s.startRun(t, map[string]any{"command": cmd, "max_failures": 2, "parallelism": 1,
		"targets": map[string]any{"platform_ids": ids}}))
	if r.State != "aborted" || (*r.Counts)["skipped"] == 0 || (*r.Counts)["failed"] > 3 || val(r.AbortReason) == "" {
		t.Fatalf("run %s (%s): %+v", r.State, val(r.AbortReason), r.Counts)
	}
	if (*r.Counts)["failed"]+(*r.Counts)["ok"]+(*r.Counts)["skipped"] != 20 {
		t.Fatalf("hosts unaccounted: %+v", r.Counts)
	}
}

func TestCancelEndsRemoteProcesses(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, map[string]string{"TESTUM_MAX_HANDSHAKES": "16"})
	ids := s.fleet(t, sshd, "c", 100, 420, nil)
	runID := s.startRun(t, map[string]any{"command": "sleep 300", "parallelism": 100, "targets": map[string]any{"platform_ids": ids}})
	deadline := time.Now().Add(waitLimit)
	for {
		r := s.getRun(t, runID)
		if (*r.Counts)["running"] == 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not all running: %+v", r.Counts)
		}
		time.Sleep(200 * time.Millisecond) // polling interval
	}
	for range 2 { // the second cancel is idempotent
		resp, err := s.api.RunCancelWithResponse(context.Background(), parseRunID(t, runID))
		checkStatus(t, "cancel", err, resp.StatusCode(), http.StatusAccepted, resp.Body)
	}
	canceledAt := time.Now()
	for i := range 100 {
		assertNoProcess(t, sshd, sshd.Addr(420+i), "sleep 300")
	}
	t.Logf("no sleep left on 100 hosts %v after cancel", time.Since(canceledAt).Round(time.Millisecond))
	r := s.waitRun(t, runID)
	if r.State != "canceled" || (*r.Counts)["canceled"] != 100 {
		t.Fatalf("after cancel: %s %+v", r.State, r.Counts)
	}
}

func TestRerunHistoryLogsAndSummary(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	ids := s.fleet(t, sshd, "h", 50, 530, map[string]string{"tier": "x"})
	// Hosts print their class: three distinct outputs; class 2 fails.
	cmd := `ip=$(echo $SSH_CONNECTION | cut -d' ' -f3); n=${ip##*.}; c=$((n % 3)); echo "class $c"; printf '\000\377'; [ $c != 2 ]`
	runID := s.startRun(t, map[string]any{"command": cmd, "targets": map[string]any{"platform_ids": ids}})
	r := s.waitRun(t, runID)
	ctx := context.Background()
	id := parseRunID(t, runID)
	sum, err := s.api.RunSummaryWithResponse(ctx, id)
	checkStatus(t, "summary", err, sum.StatusCode(), http.StatusOK, sum.Body)
	if sum.JSON200 == nil || sum.JSON200.Groups == nil || len(*sum.JSON200.Groups) != 3 {
		t.Fatalf("summary: %s", sum.Body)
	}
	total := 0
	for _, g := range *sum.JSON200.Groups {
		total += g.Count
		if g.Output == nil || !strings.HasPrefix(*g.Output, "class ") || !strings.HasPrefix(g.Hosts, "h") || !strings.Contains(g.Hosts, "[") {
			t.Errorf("group %+v", g)
		}
	}
	if total != 50 {
		t.Fatalf("summary covers %d hosts", total)
	}
	// One host's log, byte for byte, and the whole run's archive.
	h := (*r.Hosts)[0]
	hl, err := s.api.RunHostLogWithResponse(ctx, id, h.Idx, nil)
	if err != nil || hl.StatusCode() != http.StatusOK || !bytes.HasSuffix(hl.Body, []byte("\x00\xff")) || !bytes.HasPrefix(hl.Body, []byte("class ")) {
		t.Fatalf("host log: %v %d %q", err, hl.StatusCode(), hl.Body)
	}
	text := apiclient.Text
	tl, err := s.api.RunHostLogWithResponse(ctx, id, h.Idx, &apiclient.RunHostLogParams{Format: &text})
	if err != nil || !strings.Contains(string(tl.Body), " stdout | class ") {
		t.Fatalf("timestamped log: %v %q", err, tl.Body)
	}
	tgz, err := s.api.RunLogsWithResponse(ctx, id)
	checkStatus(t, "logs archive", err, tgz.StatusCode(), http.StatusOK, nil)
	if n := countTarEntries(t, tgz.Body); n != 50 {
		t.Fatalf("archive has %d logs", n)
	}
	// Re-run only the failures.
	failed := apiclient.RerunRequestOnlyFailed
	re, err := s.api.RunRerunWithResponse(ctx, id, apiclient.RerunRequest{Only: &failed})
	checkStatus(t, "rerun", err, re.StatusCode(), http.StatusCreated, re.Body)
	if re.JSON201 == nil {
		t.Fatalf("rerun: %s", re.Body)
	}
	rr := s.waitRun(t, re.JSON201.Id.String())
	if rr.ParentRunId == nil || rr.ParentRunId.String() != runID || len(hostsOf(rr)) != (*r.Counts)["failed"] || len(hostsOf(rr)) == 0 {
		t.Fatalf("rerun: parent %v, %d hosts, first run failed %d", rr.ParentRunId, len(hostsOf(rr)), (*r.Counts)["failed"])
	}
	// History filters.
	q, stateFailed := "class", apiclient.RunStateFailed
	list, err := s.api.RunListWithResponse(ctx, &apiclient.RunListParams{Q: &q, State: &stateFailed})
	checkStatus(t, "history q=class state=failed", err, list.StatusCode(), http.StatusOK, list.Body)
	if list.JSON200 == nil || len(*list.JSON200) != 2 {
		t.Fatalf("history q=class state=failed: %s", list.Body)
	}
	user, label := testAdmin, "tier=x"
	list, err = s.api.RunListWithResponse(ctx, &apiclient.RunListParams{Platform: &ids[1], User: &user, Label: &label})
	checkStatus(t, "history by platform", err, list.StatusCode(), http.StatusOK, list.Body)
	if list.JSON200 == nil || len(*list.JSON200) != 1 || (*list.JSON200)[0].Id != id || (*list.JSON200)[0].Counts == nil {
		t.Fatalf("history by platform: %s", list.Body)
	}
	if c := *(*list.JSON200)[0].Counts; c["ok"] != (*r.Counts)["ok"] || c["failed"] != (*r.Counts)["failed"] || c["ok"]+c["failed"] != 50 {
		t.Fatalf("history counts %v, the run has %v", c, r.Counts)
	}
}

func countTarEntries(t *testing.T, tgz []byte) int {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	n := 0
	for {
		_, err := tr.Next()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
}

// TestOutputCapAndS3Logs: a host printing 200 MB is cut at the cap, the
// archived log (in a real MinIO) is the host's bytes up to the cap.
func TestOutputCapAndS3Logs(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	minio := logstoretest.StartMinIO(t)
	s := startServe(t, map[string]string{"TESTUM_OUTPUT_CAP": "4MiB", "MINIO_ENDPOINT": minio.Endpoint,
		"MINIO_ACCESS_KEY": minio.AccessKey, "MINIO_SECRET_KEY": minio.SecretKey, "MINIO_BUCKET": minio.Bucket})
	ids := s.fleet(t, sshd, "big", 1, 600, nil)
	// seq 1 25000000 prints about 200 MB.
	r := s.waitRun(t, s.startRun(t, map[string]any{"command": "seq 1 25000000", "timeout": 300, "targets": map[string]any{"platform_ids": ids}}))
	h := (*r.Hosts)[0]
	if h.State != "ok" || !h.Truncated || h.OutputBytes != 4<<20 {
		t.Fatalf("host %+v", h)
	}
	hl, err := s.api.RunHostLogWithResponse(context.Background(), r.Id, 0, nil)
	checkStatus(t, "host log", err, hl.StatusCode(), http.StatusOK, nil)
	body := hl.Body
	want, err := exec.Command("sh", "-c", "seq 1 25000000 | head -c 4194304").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, want) {
		t.Fatalf("archived log: %d bytes, differs from the first %d bytes the host sent", len(body), len(want))
	}
	// The archive is in the bucket, not in the data dir: MINIO_* reach the
	// log store through the settings like every other variable.
	s3, err := logstore.NewS3(t.Context(), minio)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s3.Get(t.Context(), logstore.HostLogKey(r.Id, 0))
	if err != nil {
		t.Fatalf("log not in the bucket: %v", err)
	}
	defer func() { _ = obj.Close() }()
	n, err := io.Copy(io.Discard, obj)
	if err != nil || n != int64(len(want)) {
		t.Fatalf("bucket object: %d bytes (%v), want %d", n, err, len(want))
	}
}

// TestRunDeadlineEndsRunningHosts: the whole-run deadline stops new hosts
// and ends the running ones (timeout, their process killed).
func TestRunDeadlineEndsRunningHosts(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	ids := s.fleet(t, sshd, "dl", 4, 620, nil)
	r := s.waitRun(t, s.startRun(t, map[string]any{"command": "sleep 309", "deadline": 2, "timeout": 120, "parallelism": 2,
		"targets": map[string]any{"platform_ids": ids}}))
	if r.State != "aborted" || (*r.Counts)["timeout"] != 2 || (*r.Counts)["skipped"] != 2 || !strings.Contains(val(r.AbortReason), "deadline") {
		t.Fatalf("run %s (%s): %+v", r.State, val(r.AbortReason), r.Counts)
	}
	for _, h := range hostsOf(r) {
		if h.State == "timeout" && !strings.Contains(val(h.Error), "deadline") {
			t.Errorf("%s: %q does not name the deadline", h.Name, val(h.Error))
		}
	}
	for i := range 4 {
		assertNoProcess(t, sshd, sshd.Addr(620+i), "sleep 309")
	}
}

// TestSudoWithThePlatformPassword: sudo gets the login password when it asks
// (the script body follows on stdin), env and dir apply inside the root shell.
func TestSudoWithThePlatformPassword(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	u := sshd.NewUser(t)
	sshd.AllowSudo(t, u)
	s := startServe(t, nil)
	id := s.createPlatform(t, map[string]any{"name": "sudo01", "host": sshd.Addr(640), "port": sshd.Port,
		"username": u.Name, "auth_method": "password", "password": u.Password})
	for name, req := range map[string]map[string]any{
		"command": {"command": `echo "$(id -u) $GREETING $(pwd)"`},
		"script":  {"script": map[string]any{"interpreter": "sh", "body": `echo "$(id -u) $GREETING $(pwd)"`}},
	} {
		req["sudo"], req["env"], req["dir"] = true, map[string]string{"GREETING": "hello"}, "/tmp"
		req["targets"] = map[string]any{"platform_ids": []int64{id}}
		runID := s.startRun(t, req)
		r := s.waitRun(t, runID)
		out := hostOutput(s.wsCollect(t, runID, 0, 0), "stdout")["sudo01"]
		if r.State != "succeeded" || out != "0 hello /tmp\n" {
			t.Errorf("%s under sudo: %s, %q (%+v)", name, r.State, out, r.Hosts)
		}
	}
}

// TestConnectionsKeptForTheNextRun: a repeat run on the same hosts reuses
// their SSH connections (no new login on the host); a changed credential
// logs in anew; TESTUM_CONN_IDLE=0 turns reuse off.
func TestConnectionsKeptForTheNextRun(t *testing.T) {
	t.Parallel()
	for _, reuse := range []bool{true, false} {
		sshd := testenv.StartSSHD(t)
		env := map[string]string{}
		if !reuse {
			env["TESTUM_CONN_IDLE"] = "0"
		}
		s := startServe(t, env)
		ids := s.fleet(t, sshd, fmt.Sprintf("reuse%v", reuse), 5, 650, nil)
		logins := func() int { return strings.Count(sshd.Log(), "Accepted password for") }
		run := func() {
			t.Helper()
			if r := s.waitRun(t, s.startRun(t, map[string]any{"command": "echo hi", "targets": map[string]any{"platform_ids": ids}})); r.State != "succeeded" {
				t.Fatalf("run: %s %+v", r.State, r.Hosts)
			}
		}
		run()
		first := logins()
		run()
		second := logins() - first
		t.Logf("reuse=%v: %d logins for the first run, %d for the second", reuse, first, second)
		if first != 5 || (reuse && second != 0) || (!reuse && second != 5) {
			t.Fatalf("reuse=%v: %d logins, then %d", reuse, first, second)
		}
		if !reuse {
			continue
		}
		// A new password (the same one, re-entered) is a new credential:
		// the kept connection was authenticated with the old one.
		resp, err := s.api.PlatformUpdateWithBodyWithResponse(context.Background(), ids[0], "application/json", jsonBody(t, map[string]any{"name": "reusetrue01",
			"host": sshd.Addr(650), "port": sshd.Port, "username": sshd.PasswordUser.Name, "auth_method": "password",
			"password": sshd.PasswordUser.Password + "-wrong"}))
		checkStatus(t, "update platform", err, resp.StatusCode(), http.StatusOK, resp.Body)
		r := s.waitRun(t, s.startRun(t, map[string]any{"command": "echo hi", "targets": map[string]any{"platform_ids": ids}}))
		if (*r.Counts)["auth_failed"] != 1 || (*r.Counts)["ok"] != 4 {
			t.Fatalf("after a credential change: %+v", r.Counts)
		}
	}
}
