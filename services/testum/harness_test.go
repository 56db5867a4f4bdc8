package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/google/uuid"

	"github.com/testum/testum/libs/api/apitest"
	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

// waitLimit bounds every wait in these tests.
const waitLimit = 90 * time.Second

// urlWatcher is an io.Writer that captures a process's output and finds the
// URL it says it serves on.
type urlWatcher struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	found chan string
	once  sync.Once
	re    *regexp.Regexp
}

func newURLWatcher() *urlWatcher {
	return &urlWatcher{found: make(chan string, 1), re: regexp.MustCompile(`serving on (http://\S+)`)}
}

func (w *urlWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if m := w.re.FindSubmatch(w.buf.Bytes()); m != nil {
		w.once.Do(func() { w.found <- string(m[1]) })
	}
	return len(p), nil
}

func (w *urlWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// server is a testum serve started in-process through run().
type server struct {
	URL  string
	DB   string
	logs *urlWatcher
	out  *urlWatcher // what serve printed
	// api is the generated client; it speaks as the user s last logged in as.
	api *apiclient.ClientWithResponses
}

// newAPI is a generated client of the server at base that validates every
// answer against the OpenAPI document (failing t) and sends the bearer
// token stored for base.
func newAPI(t *testing.T, base string) *apiclient.ClientWithResponses {
	t.Helper()
	c, err := apiclient.NewClientWithResponses(base, apiclient.WithHTTPClient(contractClient),
		apiclient.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			*req = *req.WithContext(apitest.WithTest(req.Context(), t))
			if tok := tokenFor(base); tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// parseRunID parses a run id the server handed out.
func parseRunID(t *testing.T, id string) uuid.UUID {
	t.Helper()
	u, err := uuid.Parse(id)
	if err != nil {
		t.Fatalf("run id %q: %v", id, err)
	}
	return u
}

// checkStatus fails the test unless the client call succeeded with want.
func checkStatus(t *testing.T, what string, err error, status, want int, body []byte) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if status != want {
		t.Fatalf("%s: status %d, want %d: %s", what, status, want, body)
	}
}

// startServe runs `testum serve` in-process on a throwaway database and
// data dir, with env overriding the defaults, and waits for its URL.
func startServe(t *testing.T, env map[string]string) *server {
	t.Helper()
	dbURL := testenv.Postgres(t)
	vars := map[string]string{
		"DATABASE_URL":           dbURL,
		"TESTUM_DATA_DIR":        t.TempDir(),
		"TESTUM_LISTEN":          "127.0.0.1:0",
		"TESTUM_LOG_LEVEL":       "warn",
		"TESTUM_CONNECT_TIMEOUT": "15s",
		"TESTUM_MAX_HANDSHAKES":  "8",
		"TESTUM_HEARTBEAT":       "500ms",
		"TESTUM_DEAD_AFTER":      "3s",
		"TESTUM_DRAIN_TIMEOUT":   "5s",
		"ADMIN_USERNAME":         testAdmin,
		"ADMIN_PASSWORD":         testAdminKey,
	}
	for k, v := range env {
		vars[k] = v
	}
	getenv := func(k string) string { return vars[k] }
	ctx, cancel := context.WithCancel(context.Background())
	out, errw := newURLWatcher(), newURLWatcher()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, getenv, strings.NewReader(""), out, errw) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve ended with %v", err)
			}
		case <-time.After(waitLimit):
			t.Errorf("serve did not stop within %s", waitLimit)
		}
		if t.Failed() {
			t.Logf("serve log:\n%s", errw.String())
		}
	})
	select {
	case u := <-out.found:
		s := &server{URL: u, DB: vars["DATABASE_URL"], logs: errw, out: out, api: newAPI(t, u)}
		if vars["ADMIN_PASSWORD"] == testAdminKey {
			s.login(t)
		}
		return s
	case err := <-done:
		done <- err // for the cleanup, which waits for it
		t.Fatalf("serve ended before serving: %v\n%s", err, errw.String())
	case <-time.After(waitLimit):
		t.Fatalf("serve printed no URL within %s\n%s", waitLimit, errw.String())
	}
	return nil
}

// call sends a JSON request and decodes a JSON answer into out (if not nil).
func call(t *testing.T, method, u string, body any, out any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(apitest.WithTest(context.Background(), t), method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if tok := tokenFor(u); tok != "" && req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := contractClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, u, data, err)
		}
	}
	return resp.StatusCode, data
}

// contractClient validates every answer of call against the OpenAPI
// document, failing the test that made the request.
var contractClient = &http.Client{Transport: apitest.Transport(http.DefaultTransport)}

// mustCall is call that fails the test unless the status is want.
func mustCall(t *testing.T, want int, method, u string, body, out any) []byte {
	t.Helper()
	status, data := call(t, method, u, body, out)
	if status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, u, status, want, data)
	}
	return data
}

// jsonBody encodes a request body; tests build some as maps to send
// fields exactly as written.
func jsonBody(t *testing.T, body any) io.Reader {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(data)
}

func (s *server) createPlatform(t *testing.T, req map[string]any) int64 {
	t.Helper()
	resp, err := s.api.PlatformCreateWithBodyWithResponse(context.Background(), "application/json", jsonBody(t, req))
	if err == nil && resp.StatusCode() == http.StatusCreated && resp.JSON201 == nil {
		t.Fatalf("create platform: no body: %s", resp.Body)
	}
	checkStatus(t, "create platform", err, resp.StatusCode(), http.StatusCreated, resp.Body)
	return resp.JSON201.Id
}

func (s *server) startRun(t *testing.T, req any) string {
	t.Helper()
	resp, err := s.api.RunCreateWithBodyWithResponse(context.Background(), "application/json", jsonBody(t, req))
	if err == nil && resp.StatusCode() == http.StatusCreated && resp.JSON201 == nil {
		t.Fatalf("start run: no body: %s", resp.Body)
	}
	checkStatus(t, "start run", err, resp.StatusCode(), http.StatusCreated, resp.Body)
	return resp.JSON201.Id.String()
}

// getRun reads a run through the generated client, decoded into the
// gateway's own type the tests compare with.
func (s *server) getRun(t *testing.T, id string) apiclient.Run {
	t.Helper()
	resp, err := s.api.RunGetWithResponse(context.Background(), parseRunID(t, id))
	if err == nil && resp.StatusCode() == http.StatusOK && resp.JSON200 == nil {
		t.Fatalf("get run %s: no body: %s", id, resp.Body)
	}
	checkStatus(t, "get run "+id, err, resp.StatusCode(), http.StatusOK, resp.Body)
	var r apiclient.Run
	if err := json.Unmarshal(resp.Body, &r); err != nil {
		t.Fatalf("get run %s: %v", id, err)
	}
	return r
}

// waitRun polls a run until it is final.
func (s *server) waitRun(t *testing.T, id string) apiclient.Run {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		r := s.getRun(t, id)
		switch r.State {
		case "succeeded", "failed", "canceled", "aborted":
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s still %s after %s: %+v", id, r.State, waitLimit, r.Counts)
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronisation
	}
}

// wsURL is the WebSocket address of a run, optionally resuming after since.
func (s *server) wsURL(id string, since uint64) string {
	u, _ := url.Parse(s.URL)
	u.Scheme = "ws"
	u.Path = "/ws/tasks/" + id
	if since > 0 {
		u.RawQuery = fmt.Sprintf("since=%d", since)
	}
	return u.String()
}

// wsCollect reads a run's messages until done (or until limit messages
// when limit > 0, then drops the connection).
func (s *server) wsCollect(t *testing.T, id string, since uint64, limit int) []apiclient.WSMessage {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(s.wsURL(id, since), http.Header{"Origin": {s.URL},
		"Authorization": {"Bearer " + tokenFor(s.URL)}})
	if err != nil {
		if resp != nil {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("websocket %s: %v: %d %s", id, err, resp.StatusCode, b)
		}
		t.Fatalf("websocket %s: %v", id, err)
	}
	defer conn.Close()
	var msgs []apiclient.WSMessage
	for {
		_ = conn.SetReadDeadline(time.Now().Add(waitLimit))
		var m apiclient.WSMessage
		_, frame, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("websocket %s: read after %d messages: %v", id, len(msgs), err)
		}
		if msg := apitest.CheckWSMessage(frame); msg != "" {
			t.Errorf("websocket %s: message %d breaks openapi.yaml: %s", id, len(msgs), msg)
		}
		if err := json.Unmarshal(frame, &m); err != nil {
			t.Fatalf("websocket %s: message %d: %v", id, len(msgs), err)
		}
		msgs = append(msgs, m)
		if m.Type == "done" || (limit > 0 && len(msgs) >= limit) {
			return msgs
		}
	}
}

// hostOutput joins the stdout payloads of each host.
func hostOutput(msgs []apiclient.WSMessage, typ string) map[string]string {
	out := map[string]string{}
	for _, m := range msgs {
		if string(m.Type) == typ {
			out[val(m.Host)] += m.Payload
		}
	}
	return out
}

// binary builds the testum binary once per test binary.
var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func testumBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "testum-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "testum")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// process is a testum subprocess.
type process struct {
	cmd    *exec.Cmd
	out    *urlWatcher
	exited chan struct{} // closed once cmd.Wait returned (cmd.ProcessState is then set)
}

// startProcess runs the testum binary with args and env (added to a clean
// environment), stopping it with SIGTERM at cleanup.
func startProcess(t *testing.T, env map[string]string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(testumBinary(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	w := newURLWatcher()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	p := &process{cmd: cmd, out: w, exited: exited}
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(waitLimit):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("%v did not stop on SIGINT", args)
		}
		if t.Failed() {
			t.Logf("%v output:\n%s", args, w.String())
		}
	})
	return p
}

// The first super_admin of every test server.
const (
	testAdmin    = "root-admin"
	testAdminKey = "test-master-key-0123456789"
)

// tokens maps a server's base URL to the bearer token call sends to it.
var tokens sync.Map

func tokenFor(u string) string {
	var tok string
	tokens.Range(func(k, v any) bool {
		if strings.HasPrefix(u, k.(string)+"/") || u == k.(string) {
			tok = v.(string)
			return false
		}
		return true
	})
	return tok
}

// login logs in as the test super_admin; later calls to s carry the token.
func (s *server) login(t *testing.T) {
	t.Helper()
	if s.api == nil {
		s.api = newAPI(t, s.URL)
	}
	// A 503 says "try again" (a loaded machine can hold a fresh serve's
	// first statements past the request deadline): the harness does, as
	// a client should, a few times.
	var resp *apiclient.AuthLoginResponse
	var err error
	for try := 1; ; try++ {
		resp, err = s.api.AuthLoginWithResponse(context.Background(),
			apiclient.LoginRequest{Username: testAdmin, Password: testAdminKey})
		if err != nil || resp.StatusCode() != http.StatusServiceUnavailable || try == 3 {
			break
		}
		t.Logf("login: try %d answered %d, trying again: %s", try, resp.StatusCode(), resp.Body)
	}
	if err == nil && resp.StatusCode() == http.StatusOK && resp.JSON200 == nil {
		t.Fatalf("login: no body: %s", resp.Body)
	}
	checkStatus(t, "login", err, resp.StatusCode(), http.StatusOK, resp.Body)
	tokens.Store(s.URL, resp.JSON200.AccessToken)
	t.Cleanup(func() { tokens.Delete(s.URL) })
}

// hostsOf is a run's hosts; none when the answer left them out.
func hostsOf(r apiclient.Run) []apiclient.RunHost {
	if r.Hosts == nil {
		return nil
	}
	return *r.Hosts
}

// val is an optional field's value, the zero value when left out.
func val[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
