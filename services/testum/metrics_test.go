package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/testum/testum/libs/api/apitest"
	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/secrets"
	"github.com/testum/testum/libs/testenv"
)

const testMetricsToken = "metrics-token-0123456789abcdef"

// everyMetric is every metric /metrics must show, whatever the process did.
var everyMetric = []string{
	"testum_executor_slots", "testum_hosts_total", "testum_ssh_handshake_seconds", "testum_http_requests_total",
	"testum_websocket_clients", "testum_tasks_pending", "testum_ssh_handshake_failures_total",
	"testum_command_duration_seconds", "testum_output_bytes_total", "testum_jetstream_publish_duration_seconds",
	"testum_jetstream_publish_retries_total", "testum_coordinator_runs_active", "testum_reaper_actions_total",
	"testum_http_request_duration_seconds", "testum_sessions_active", "testum_login_failures_total",
	"go_goroutines", "process_resident_memory_bytes",
}

// get sends a GET with the given Authorization (none when empty), checked
// against the OpenAPI document.
func get(t *testing.T, u, authorization string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(apitest.WithTest(context.Background(), t), "GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := contractClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// scraped is one scrape of /metrics, parsed.
type scraped map[string]*dto.MetricFamily

// scrape reads base's /metrics with the metrics token.
func scrape(t *testing.T, base string) scraped {
	t.Helper()
	status, body := get(t, base+"/metrics", "Bearer "+testMetricsToken)
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return fams
}

// value is the value of the series of name whose labels include labels
// (pairs of name and value): a counter's or gauge's value, a histogram's
// count; -1 when there is no such series.
func (s scraped) value(name string, labels ...string) float64 {
	f := s[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	return -1
}

// waitMetric scrapes until ok holds for a scrape, and returns that one.
func waitMetric(t *testing.T, base, what string, ok func(scraped) bool) scraped {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		s := scrape(t, base)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics: %s did not happen within %s", what, waitLimit)
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronisation
	}
}

// TestMetricsMoveWithARun scrapes the gateway of `testum serve`: every
// metric is there, slots in use rise while a run's commands are held, the
// host outcome counter, handshakes, command durations and output bytes
// move when it ends, and WebSocket clients and login failures are counted.
func TestMetricsMoveWithARun(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, map[string]string{"TESTUM_METRICS_TOKEN": testMetricsToken})
	before := waitMetric(t, s.URL, "the executor's slots are counted", func(m scraped) bool {
		return m.value("testum_executor_slots", "state", "total") > 0 && m.value("testum_tasks_pending") >= 0
	})
	if v := before.value("testum_executor_slots", "state", "in_use"); v != 0 {
		t.Fatalf("slots in use before any run: %v", v)
	}

	// The hosts' commands wait for a file the test creates once it has seen
	// them all hold a slot.
	dir := filepath.Join(sshd.PasswordUser.Home, "metrics-"+strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o777)
	t.Cleanup(func() { os.RemoveAll(dir) })
	release := filepath.Join(dir, "go")
	const hosts = 3
	ids := s.fleet(t, sshd, "m", hosts, 900, nil)
	runID := s.startRun(t, map[string]any{"command": fmt.Sprintf("until [ -e %s ]; do sleep 0.05; done; echo released", release),
		"parallelism": hosts, "timeout": 120, "targets": map[string]any{"platform_ids": ids}})

	// A slot is in use from the host's claim on, its handshake counted once
	// it is logged in: both while the commands wait.
	during := waitMetric(t, s.URL, "every host of the run holds a slot, logged in", func(m scraped) bool {
		return m.value("testum_executor_slots", "state", "in_use") == hosts && m.value("testum_ssh_handshake_seconds") == hosts
	})
	if v := during.value("testum_coordinator_runs_active"); v != 1 {
		t.Errorf("coordinator runs active during the run: %v, want 1", v)
	}

	conn, resp, err := websocket.DefaultDialer.Dial(s.wsURL(runID, 0), http.Header{"Origin": {s.URL},
		"Authorization": {"Bearer " + tokenFor(s.URL)}})
	if err != nil {
		t.Fatalf("websocket: %v (%v)", err, resp)
	}
	defer conn.Close()
	waitMetric(t, s.URL, "the WebSocket client is counted", func(m scraped) bool { return m.value("testum_websocket_clients") == 1 })

	failures := during.value("testum_login_failures_total")
	lr, err := s.api.AuthLoginWithResponse(context.Background(), apiclient.LoginRequest{Username: testAdmin, Password: "wrong-key-0123456789"})
	checkStatus(t, "wrong login", err, lr.StatusCode(), http.StatusUnauthorized, lr.Body)

	if err := os.WriteFile(release, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	r := s.waitRun(t, runID)
	if r.State != "succeeded" || val(r.Counts)["ok"] != hosts {
		t.Fatalf("run %s %+v", r.State, r.Counts)
	}
	_ = conn.Close()

	after := waitMetric(t, s.URL, "the hosts' outcomes are counted and the WebSocket client gone", func(m scraped) bool {
		return m.value("testum_hosts_total", "state", "ok") == before.value("testum_hosts_total", "state", "ok")+hosts &&
			m.value("testum_websocket_clients") == 0 && m.value("testum_executor_slots", "state", "in_use") == 0
	})
	for _, name := range everyMetric {
		if after[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}
	checks := []struct {
		what       string
		got, least float64
	}{
		{"command durations", after.value("testum_command_duration_seconds"), hosts},
		{"output bytes", after.value("testum_output_bytes_total"), hosts * float64(len("released\n"))},
		{"JetStream publishes", after.value("testum_jetstream_publish_duration_seconds"), 1},
		{"login failures", after.value("testum_login_failures_total"), failures + 1},
		{"run creations", after.value("testum_http_requests_total", "route", "/api/runs", "status", "201"), 1},
		{"run reads timed", after.value("testum_http_request_duration_seconds", "route", "/api/runs/:id"), 1},
		{"active sessions", after.value("testum_sessions_active"), 1},
	}
	for _, c := range checks {
		if c.got < c.least {
			t.Errorf("%s: %v, want at least %v", c.what, c.got, c.least)
		}
	}
	if v := after.value("testum_hosts_total", "state", "failed"); v != 0 {
		t.Errorf("failed hosts counted: %v", v)
	}
	if after.value("testum_http_requests_total", "route", "/api/runs/"+runID) != -1 {
		t.Error("a raw path is a route label value")
	}

	// A host that refuses the connection: its outcome and the dial's class.
	refusing := s.createPlatform(t, map[string]any{"name": "refusing", "host": "127.0.0.1", "port": testenv.ClosedPort(t),
		"username": "nobody", "auth_method": "password", "password": "x"})
	if r := s.waitRun(t, s.startRun(t, map[string]any{"command": "true", "targets": map[string]any{"platform_ids": []int64{refusing}}})); val(r.Counts)["unreachable"] != 1 {
		t.Fatalf("run on a refusing host: %s %+v", r.State, r.Counts)
	}
	mustCall(t, http.StatusNotFound, "POST", s.URL+"/api/no-such-route", "{}", nil)
	final := waitMetric(t, s.URL, "the refused dial is counted", func(m scraped) bool {
		return m.value("testum_hosts_total", "state", "unreachable") == after.value("testum_hosts_total", "state", "unreachable")+1
	})
	if got, was := final.value("testum_ssh_handshake_failures_total", "class", "refused"), after.value("testum_ssh_handshake_failures_total", "class", "refused"); got != was+1 {
		t.Errorf("refused dials: %v, want %v", got, was+1)
	}
	if final.value("testum_http_requests_total", "route", "other", "status", "404") < 1 {
		t.Error("a request no route answers is not counted as route other")
	}
}

// TestMetricsAccess: /metrics is for an extended_admin (or super_admin)
// session or the metrics token, nobody else.
func TestMetricsAccess(t *testing.T) {
	t.Parallel()
	s := startServe(t, map[string]string{"TESTUM_METRICS_TOKEN": testMetricsToken})
	// Logins go without the super_admin's token: a login ends the session
	// its request carries.
	anon, err := apiclient.NewClientWithResponses(s.URL, apiclient.WithHTTPClient(contractClient))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[apiclient.Role]string{}
	for _, role := range []apiclient.Role{apiclient.Admin, apiclient.ExtendedAdmin} {
		made, err := s.api.UserCreateWithResponse(context.Background(), apiclient.UserCreateRequest{Username: "metrics-" + string(role), Role: &role})
		if err != nil || made.JSON201 == nil {
			t.Fatalf("create %s: %v %s", role, err, made.Body)
		}
		keys[role] = made.JSON201.MasterKey
	}
	token := func(role apiclient.Role) string {
		lr, err := anon.AuthLoginWithResponse(apitest.WithTest(context.Background(), t),
			apiclient.LoginRequest{Username: "metrics-" + string(role), Password: keys[role]})
		if err != nil || lr.JSON200 == nil {
			t.Fatalf("login %s: %v %s", role, err, lr.Body)
		}
		return lr.JSON200.AccessToken
	}
	cases := []struct {
		name, authorization string
		want                int
	}{
		{"no session", "", http.StatusUnauthorized},
		{"admin session", "Bearer " + token(apiclient.Admin), http.StatusForbidden},
		{"extended_admin session", "Bearer " + token(apiclient.ExtendedAdmin), http.StatusOK},
		{"super_admin session", "Bearer " + tokenFor(s.URL), http.StatusOK},
		{"metrics token", "Bearer " + testMetricsToken, http.StatusOK},
		{"wrong token", "Bearer " + testMetricsToken + "x", http.StatusUnauthorized},
		{"token not as a bearer", testMetricsToken, http.StatusUnauthorized},
	}
	for _, c := range cases {
		status, body := get(t, s.URL+"/metrics", c.authorization)
		if status != c.want {
			t.Errorf("%s: %d, want %d: %.200s", c.name, status, c.want, body)
		}
		if status == http.StatusOK && !bytes.Contains(body, []byte("testum_executor_slots")) {
			t.Errorf("%s: no metrics in %.200s", c.name, body)
		}
	}
	if strings.Contains(s.logs.String(), testMetricsToken) {
		t.Error("the metrics token reached the log")
	}
}

// TestExecutorOpsListener: `testum executor` serves /healthz, /readyz and,
// for the metrics token only, its metrics on TESTUM_OPS_LISTEN.
func TestExecutorOpsListener(t *testing.T) {
	t.Parallel()
	fernet, err := secrets.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"DATABASE_URL":          testenv.Postgres(t),
		"NATS_URL":              testenv.NATS(t).URL,
		"FERNET_KEY":            fernet,
		"SECRET_KEY":            "ops-secret-key-0123456789abcdef0123456789",
		"TESTUM_DATA_DIR":       t.TempDir(),
		"TESTUM_LOG_LEVEL":      "warn",
		"TESTUM_OPS_LISTEN":     "127.0.0.1:0",
		"TESTUM_METRICS_TOKEN":  testMetricsToken,
		"TESTUM_EXECUTOR_SLOTS": "7",
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := newURLWatcher()
	out.re = regexp.MustCompile(`ops listener on (http://\S+)`)
	errw := newURLWatcher()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"executor"}, func(k string) string { return vars[k] }, strings.NewReader(""), out, errw)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("executor ended with %v", err)
			}
		case <-time.After(waitLimit):
			t.Errorf("executor did not stop within %s", waitLimit)
		}
		if t.Failed() {
			t.Logf("executor log:\n%s", errw.String())
		}
	})
	var base string
	select {
	case base = <-out.found:
	case err := <-done:
		done <- err
		t.Fatalf("executor ended: %v\n%s", err, errw.String())
	case <-time.After(waitLimit):
		t.Fatalf("no ops listener within %s\n%s", waitLimit, errw.String())
	}
	httpGet := func(path, authorization string) (int, string) {
		req, err := http.NewRequest("GET", base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := httpGet("/healthz", ""); status != http.StatusOK {
		t.Fatalf("/healthz: %d %s", status, body)
	}
	deadline := time.Now().Add(waitLimit)
	for {
		status, body := httpGet("/readyz", "")
		if status == http.StatusOK {
			break
		}
		if status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("/readyz: %d %s", status, body)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	for _, c := range []struct {
		authorization string
		want          int
	}{{"", http.StatusUnauthorized}, {"Bearer wrong", http.StatusUnauthorized}, {"Bearer " + testMetricsToken, http.StatusOK}} {
		status, body := httpGet("/metrics", c.authorization)
		if status != c.want {
			t.Errorf("/metrics with %q: %d, want %d", c.authorization, status, c.want)
		}
		if status == http.StatusOK && !strings.Contains(body, `testum_executor_slots{state="total"}`) {
			t.Errorf("/metrics: no slots in\n%.500s", body)
		}
	}
	// The executor's slots are counted once it runs.
	for {
		_, body := httpGet("/metrics", "Bearer "+testMetricsToken)
		if strings.Contains(body, `testum_executor_slots{state="total"} 7`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slots never counted:\n%s", body)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}
