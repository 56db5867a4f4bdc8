package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	jsonv2 "github.com/chromedp/cdproto/cdp/jsonv2"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/tracing"
	"github.com/chromedp/chromedp"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/testenv"
)

// chromiumPath is Debian's Chromium (make test installs it).
const chromiumPath = "/usr/bin/chromium"

// browser is a headless Chromium on one tab whose every request is checked:
// requests to the gateway go through, anything else is failed and recorded,
// so a test proves the console needs nothing but the gateway.
type browser struct {
	t      *testing.T
	ctx    context.Context
	origin string
	shots  string

	mu      sync.Mutex
	foreign []string // requests to anywhere but the gateway
	console []string // exceptions and CSP refusals
}

// startBrowser opens the console's origin in a new headless Chromium. With
// watchSockets the Network domain reports every WebSocket the page opens
// (and, as a cost, every frame it receives: the 500-host test goes without).
func startBrowser(t *testing.T, origin string, watchSockets bool) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the console tests need %s (apt-get install chromium; make test installs it): %v", chromiumPath, err)
	}
	// The console must be built into the binary, not the placeholder.
	resp, err := http.Get(origin + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `<div id="app">`) {
		t.Fatalf("GET / answered %d without the console: run `make web` first (make test does)\n%s", resp.StatusCode, page)
	}
	shots := os.Getenv("TESTUM_ARTIFACTS")
	if shots == "" {
		shots, _ = filepath.Abs(filepath.Join("..", "..", "artifacts"))
	}
	shots = filepath.Join(shots, "console")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	var wg sync.WaitGroup // the event loops below; they end with ctx
	t.Cleanup(func() { cancel(); cancelAlloc(); wg.Wait() })
	b := &browser{t: t, ctx: ctx, origin: origin, shots: shots}
	if err := chromedp.Do(ctx); err != nil { // starts the browser and opens the tab
		t.Fatalf("chromium: %v", err)
	}
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	sockets := chromedp.Events(ctx, network.WebSocketCreated)
	messages := chromedp.Console(ctx)
	if watchSockets {
		if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*"}}}); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			if b.ours(ev.Request.URL) {
				_, _ = chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
				continue
			}
			b.mu.Lock()
			b.foreign = append(b.foreign, ev.Request.URL)
			b.mu.Unlock()
			_, _ = chromedp.Call(ctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: ev.RequestID, ErrorReason: network.ErrorReasonInternetDisconnected})
		}
	})
	wg.Go(func() {
		for ev, err := range sockets {
			if err != nil {
				return
			}
			if !b.ours(ev.URL) {
				b.mu.Lock()
				b.foreign = append(b.foreign, ev.URL)
				b.mu.Unlock()
			}
		}
	})
	wg.Go(func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			// Exceptions, and what the browser refused (CSP): a 401 of the
			// session probe before login is expected and not recorded.
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") || strings.Contains(m.Text, "Refused to") {
				b.mu.Lock()
				b.console = append(b.console, m.Text)
				b.mu.Unlock()
			}
		}
	})
	return b
}

// ours reports whether u is the gateway (http or ws) or inline data.
func (b *browser) ours(u string) bool {
	if strings.HasPrefix(u, "data:") {
		return true
	}
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	o, _ := url.Parse(b.origin)
	return p.Host == o.Host && (p.Scheme == "http" || p.Scheme == "ws")
}

// do runs steps, each bounded by waitLimit.
func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitLimit)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.shot("failure")
		b.t.Fatalf("browser: %v\nconsole errors: %q", err, b.consoleErrors())
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, waitLimit)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.shot("failure")
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript condition in the page until it holds.
func (b *browser) waitFor(what, cond string, limit time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, limit+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(limit)))
	if err != nil {
		b.shot("failure")
		b.t.Fatalf("waiting for %s (%s): %v\nconsole errors: %q", what, cond, err, b.consoleErrors())
	}
}

func (b *browser) shot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(b.shots, b.t.Name()+"-"+name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.t.Logf("screenshot %s", p)
}

// shotViewport saves what the window shows (a full-page shot of a long page
// would show the rows off screen as the blank boxes they are until scrolled to).
func (b *browser) shotViewport(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err == nil {
		p := filepath.Join(b.shots, b.t.Name()+"-"+name+".png")
		if err = os.WriteFile(p, png, 0o644); err == nil {
			b.t.Logf("screenshot %s", p)
		}
	}
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
}

func (b *browser) foreignRequests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.foreign...)
}

func (b *browser) consoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.console...)
}

// mainThread is what a trace says of the renderer's main thread.
type mainThread struct {
	Busy  time.Duration // wall time of its tasks
	CPU   time.Duration // CPU time those tasks used
	Tasks int
}

// traceMainThread traces the tab while fn runs and sums the tasks of the
// renderer's main thread (CrRendererMain): wall time against CPU time
// tells a page that works hard from one that waits for a busy machine.
func (b *browser) traceMainThread(fn func()) mainThread {
	b.t.Helper()
	type event struct {
		Name string  `json:"name"`
		Ph   string  `json:"ph"`
		Pid  int     `json:"pid"`
		Tid  int     `json:"tid"`
		Dur  float64 `json:"dur"`
		Tdur float64 `json:"tdur"`
		Args struct {
			Name string `json:"name"`
		} `json:"args"`
	}
	type thread struct{ pid, tid int }
	var (
		mu   sync.Mutex
		raw  []jsonv2.Value
		done = make(chan struct{})
		once sync.Once
	)
	// Listen keeps the order of events: the data arrives before the end. It
	// runs in the tab's loop, so it only keeps the data; parsing comes after.
	err := chromedp.Listen(b.ctx, func(ev any) {
		switch ev := ev.(type) {
		case *tracing.EventDataCollected:
			mu.Lock()
			raw = append(raw, ev.Value...)
			mu.Unlock()
		case *tracing.EventTracingComplete:
			once.Do(func() { close(done) })
		}
	})
	if err != nil {
		b.t.Fatal(err)
	}
	if _, err := chromedp.Call(b.ctx, tracing.Start, tracing.StartParams{TraceConfig: &tracing.TraceConfig{
		IncludedCategories: []string{"toplevel"}}}); err != nil {
		b.t.Fatalf("trace: %v", err)
	}
	fn()
	if _, err := chromedp.Call(b.ctx, tracing.End, cdp.Empty{}); err != nil {
		b.t.Fatalf("trace: %v", err)
	}
	select {
	case <-done:
	case <-time.After(3 * waitLimit):
		b.t.Fatal("the trace did not complete")
	}
	mu.Lock()
	defer mu.Unlock()
	names := map[thread]string{}
	busy := map[thread][3]float64{} // wall µs, CPU µs, tasks
	for _, v := range raw {
		var e event
		if json.Unmarshal(v, &e) != nil {
			continue
		}
		th := thread{e.Pid, e.Tid}
		switch {
		case e.Ph == "M" && e.Name == "thread_name":
			names[th] = e.Args.Name
		case e.Ph == "X" && e.Name == "ThreadControllerImpl::RunTask":
			x := busy[th]
			busy[th] = [3]float64{x[0] + e.Dur, x[1] + e.Tdur, x[2] + 1}
		}
	}
	var best [3]float64
	for th, x := range busy {
		if names[th] == "CrRendererMain" && x[0] > best[0] {
			best = x
		}
	}
	return mainThread{Busy: time.Duration(best[0]) * time.Microsecond, CPU: time.Duration(best[1]) * time.Microsecond, Tasks: int(best[2])}
}

// setSelect chooses an option of a <select> as a user would (change event).
func (b *browser) setSelect(sel, value string) {
	b.t.Helper()
	js := fmt.Sprintf(`(() => { const s = document.querySelector(%q); if (!s) return false; s.value = %q; s.dispatchEvent(new Event('change', {bubbles: true})); return s.value === %q; })()`, sel, value, value)
	if !eval[bool](b, js) {
		b.t.Fatalf("select %s: no option %q", sel, value)
	}
}

// login logs in through the login page.
func (b *browser) login(user, key string) {
	b.t.Helper()
	b.do(
		chromedp.Navigate(b.origin+"/"),
		chromedp.WaitVisible(chromedp.ID("login-username")),
		chromedp.SendKeys(chromedp.ID("login-username"), user),
		chromedp.SendKeys(chromedp.ID("login-password"), key),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("page-dashboard")),
	)
}

// termText is what a host's terminal pane shows.
func termText(b *browser, host string) string {
	return eval[string](b, fmt.Sprintf(`[...((document.querySelector('.term[data-host=%q] .xterm-rows') || {}).children || [])].map((r) => r.textContent).join('\n')`, host))
}

func (s *server) run(t *testing.T, id string) apiclient.Run {
	t.Helper()
	var r apiclient.Run
	mustCall(t, http.StatusOK, "GET", s.URL+"/api/runs/"+id, nil, &r)
	return r
}

func final(state string) bool {
	switch state {
	case "succeeded", "failed", "canceled", "aborted":
		return true
	}
	return false
}

// lastRunID is the run the console's run view shows.
func lastRunID(b *browser) string {
	return eval[string](b, `(document.getElementById('page-run') || {dataset: {}}).dataset.run || ''`)
}

// TestConsoleOffline loads the console in a browser that can reach nothing
// but the gateway: every other request fails and is recorded. The app must
// render, log in and show the dashboard, and must have tried nothing else.
func TestConsoleOffline(t *testing.T) {
	t.Parallel()
	s := startServe(t, nil)
	b := startBrowser(t, s.URL, true)
	b.do(chromedp.Navigate(s.URL+"/runs"), chromedp.WaitVisible(chromedp.ID("login-form")))
	if p := eval[string](b, `location.pathname`); p != "/login" {
		t.Fatalf("a deep link without a session went to %s, want /login", p)
	}
	b.login(testAdmin, testAdminKey)
	b.waitFor("the dashboard's data", `document.querySelector('#dash-platform-states [data-count="all"]') !== null`, waitLimit)
	// A deep link is the SPA too: the gateway answers it with index.html.
	b.do(chromedp.Navigate(s.URL+"/platforms"), chromedp.WaitVisible(chromedp.ID("page-platforms")))
	b.shot("offline-platforms")
	if f := b.foreignRequests(); len(f) > 0 {
		t.Fatalf("the console tried to reach %q", f)
	}
	if c := b.consoleErrors(); len(c) > 0 {
		t.Fatalf("console errors (a CSP violation shows here): %q", c)
	}
	// The security headers are on every console response.
	resp, err := http.Get(s.URL + "/runs/new")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "connect-src 'self' ws://", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "script-src 'self' 'unsafe-inline'") {
		t.Errorf("CSP allows inline scripts: %q", csp)
	}
	// /api paths never fall back to the console.
	st, body := call(t, "GET", s.URL+"/api/no-such-route", nil, nil)
	if st != http.StatusNotFound || !strings.Contains(string(body), `"error"`) {
		t.Errorf("GET /api/no-such-route: %d %s, want a JSON 404", st, body)
	}
}

// TestConsoleFlow drives the console as an operator would: log in, add
// three platforms through the form, run a command and watch its lines
// arrive in each host's terminal before the run ends, cancel a long run,
// switch to Russian and the dark theme, log out; an admin-role user does
// not get the Users page.
func TestConsoleFlow(t *testing.T) {
	t.Parallel()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, nil)
	b := startBrowser(t, s.URL, true)
	b.login(testAdmin, testAdminKey)
	b.shot("dashboard")

	// Three platforms through the UI form.
	b.do(chromedp.Click(chromedp.ID("nav-platforms")), chromedp.WaitVisible(chromedp.ID("platform-add")))
	hosts := []string{"con01", "con02", "con03"}
	for i, name := range hosts {
		b.do(
			chromedp.Click(chromedp.ID("platform-add")),
			chromedp.WaitVisible(chromedp.ID("pf-name")),
			chromedp.SendKeys(chromedp.ID("pf-name"), name),
			chromedp.SendKeys(chromedp.ID("pf-host"), sshd.Addr(2000+i)),
			chromedp.SetValue(chromedp.ID("pf-port"), ""),
			chromedp.SendKeys(chromedp.ID("pf-port"), fmt.Sprint(sshd.Port)),
			chromedp.SendKeys(chromedp.ID("pf-username"), sshd.PasswordUser.Name),
		)
		b.setSelect("#pf-auth", "password")
		b.do(
			chromedp.SendKeys(chromedp.ID("pf-password"), sshd.PasswordUser.Password),
			chromedp.SendKeys(chromedp.ID("pf-labels"), "suite=console"),
			chromedp.Click(chromedp.ID("pf-submit")),
			chromedp.WaitNotPresent(chromedp.ID("platform-dialog")),
			chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-platform=%q]`, name))),
		)
	}
	b.do(chromedp.Click(chromedp.CSS(`button[data-test="con01"]`)))
	b.waitFor("a connection test", `document.querySelector('tr[data-platform="con01"] .badge').dataset.state === 'reachable'`, waitLimit)
	b.shot("platforms")

	// A run whose lines arrive a second apart: each pane shows "1" while
	// the run is still going. The hosts then wait for a gate file that the
	// test creates only once every pane showed its first line, so that a
	// loaded machine cannot end the run before the panes are open (and a
	// console that showed output only at the end would never open it).
	gate := filepath.Join(sshd.PasswordUser.Home, fmt.Sprintf("console-gate-%d-%d", os.Getpid(), time.Now().UnixNano()))
	t.Cleanup(func() { os.Remove(gate) })
	b.do(chromedp.Click(chromedp.ID("nav-composer")), chromedp.WaitVisible(chromedp.ID("tp-labels")),
		chromedp.SendKeys(chromedp.ID("tp-labels"), "suite=console"))
	b.waitFor("the target preview", `document.getElementById('tp-count').textContent === '3'`, waitLimit)
	b.do(chromedp.SendKeys(chromedp.ID("rc-command"), "for i in 1 2 3; do echo $i; sleep 1; done; until [ -e "+gate+" ]; do sleep 0.1; done"),
		chromedp.Click(chromedp.ID("rc-submit")),
		chromedp.WaitVisible(chromedp.ID("host-table")))
	runID := lastRunID(b)
	for _, h := range hosts {
		b.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`button[data-open-host=%q]`, h))),
			chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`.term[data-host=%q] .xterm-rows`, h))))
	}
	seen := map[string]bool{}
	deadline := time.Now().Add(waitLimit)
	for len(seen) < len(hosts) {
		for _, h := range hosts {
			if !seen[h] && strings.Contains(termText(b, h), "1") {
				seen[h] = true
				if r := s.run(t, runID); final(string(r.State)) {
					t.Fatalf("%s showed its first line only after the run ended (%s)", h, r.State)
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("terminals did not show output: seen %v", seen)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b.shot("streaming")
	b.waitFor("every host ok", `document.querySelectorAll('#host-rows .host-row[data-state="ok"]').length === 3`, waitLimit)
	b.waitFor("the run succeeded", `document.getElementById('page-run').dataset.runState === 'succeeded'`, waitLimit)
	for _, h := range hosts {
		if got := strings.Join(strings.Fields(termText(b, h)), " "); got != "1 2 3" {
			t.Errorf("%s terminal shows %q, want 1 2 3 once each", h, got)
		}
	}
	b.do(chromedp.Click(chromedp.ID("run-grouped")), chromedp.WaitVisible(chromedp.CSS(`#summary-groups .group`)))
	if n := eval[int](b, `document.querySelectorAll('#summary-groups .group').length`); n != 1 {
		t.Errorf("grouped view: %d groups, want 1 (three identical outputs)", n)
	}
	b.shot("succeeded")

	// A dropped connection resumes after the last seq: nothing lost, nothing twice.
	b.do(chromedp.Click(chromedp.ID("nav-composer")), chromedp.WaitVisible(chromedp.ID("tp-hosts")),
		chromedp.SendKeys(chromedp.ID("tp-hosts"), "con01"),
		chromedp.SendKeys(chromedp.ID("rc-command"), "for i in 1 2 3 4 5 6; do echo line$i; sleep 0.5; done"),
		chromedp.Click(chromedp.ID("rc-submit")),
		chromedp.WaitVisible(chromedp.CSS(`button[data-open-host="con01"]`)),
		chromedp.Click(chromedp.CSS(`button[data-open-host="con01"]`)))
	b.waitFor("the first line", `((document.querySelector('.term[data-host="con01"] .xterm-rows') || {}).textContent || '').includes('line1')`, waitLimit)
	eval[bool](b, `(document.getElementById('page-run').testumStream.drop(), true)`)
	b.waitFor("the reconnect", `document.getElementById('run-conn').dataset.conn === 'reconnecting' || document.getElementById('run-conn').dataset.conn === 'live'`, waitLimit)
	b.waitFor("the run to end", `document.getElementById('page-run').dataset.runState === 'succeeded'`, waitLimit)
	b.waitFor("the last line", `((document.querySelector('.term[data-host="con01"] .xterm-rows') || {}).textContent || '').includes('line6')`, waitLimit)
	if got := strings.Join(strings.Fields(termText(b, "con01")), " "); got != "line1 line2 line3 line4 line5 line6" {
		t.Errorf("after a reconnect the terminal shows %q, want each line once", got)
	}

	// Cancel a long run.
	b.do(chromedp.Click(chromedp.ID("nav-composer")), chromedp.WaitVisible(chromedp.ID("tp-labels")),
		chromedp.SendKeys(chromedp.ID("tp-labels"), "suite=console"),
		chromedp.SendKeys(chromedp.ID("rc-command"), "sleep 300"),
		chromedp.Click(chromedp.ID("rc-submit")),
		chromedp.WaitVisible(chromedp.ID("host-table")))
	b.waitFor("every host running", `document.querySelectorAll('#host-rows .host-row[data-state="running"]').length === 3`, waitLimit)
	b.do(chromedp.Click(chromedp.ID("run-cancel")))
	b.waitFor("the run canceled", `document.getElementById('page-run').dataset.runState === 'canceled'`, waitLimit)
	b.waitFor("every host canceled", `document.querySelectorAll('#host-rows .host-row[data-state="canceled"]').length === 3`, waitLimit)
	if r := s.run(t, lastRunID(b)); r.State != "canceled" {
		t.Fatalf("the API says the canceled run is %s", r.State)
	}
	b.shot("canceled")

	// Russian and the dark theme, remembered across a reload.
	b.setSelect("#lang-select", "ru")
	b.setSelect("#theme-select", "dark")
	b.waitFor("Russian", `document.getElementById('nav-platforms').textContent === 'Платформы' && document.documentElement.lang === 'ru'`, waitLimit)
	b.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("host-table")))
	b.waitFor("Russian and dark after a reload", `document.getElementById('nav-platforms').textContent === 'Платформы' && document.documentElement.dataset.theme === 'dark' && document.getElementById('run-state').textContent === 'отменён'`, waitLimit)
	b.shot("russian-dark")
	if c := eval[string](b, `localStorage.getItem('testum.theme') + ' ' + localStorage.getItem('testum.locale') + ' ' + JSON.stringify(Object.keys(localStorage))`); strings.Contains(c, testAdminKey) {
		t.Fatal("the master key is in localStorage")
	}

	// A new user through the Users page: the master key is revealed once.
	b.setSelect("#lang-select", "en")
	b.do(chromedp.Click(chromedp.ID("nav-users")), chromedp.WaitVisible(chromedp.ID("user-name")),
		chromedp.SendKeys(chromedp.ID("user-name"), "ops"))
	b.setSelect("#user-role", "admin")
	b.do(chromedp.Click(chromedp.ID("user-submit")), chromedp.WaitVisible(chromedp.ID("reveal-key")))
	var created struct{ MasterKey string }
	created.MasterKey = eval[string](b, `document.getElementById('reveal-key').value`)
	if len(created.MasterKey) < 16 {
		t.Fatalf("revealed master key %q", created.MasterKey)
	}
	b.shot("user-created")
	b.do(chromedp.Click(chromedp.ID("reveal-done")), chromedp.WaitNotPresent(chromedp.ID("reveal-dialog")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-user="ops"]`)))
	// The audit log shows what happened.
	b.do(chromedp.Click(chromedp.ID("nav-audit")), chromedp.WaitVisible(chromedp.ID("audit-rows")))
	b.waitFor("audit entries", `[...document.querySelectorAll('#audit-rows td.mono')].some((td) => td.textContent === 'user.create')`, waitLimit)

	// Log out.
	b.do(chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	b.do(chromedp.Navigate(s.URL+"/platforms"), chromedp.WaitVisible(chromedp.ID("login-form")))
	b.shot("logged-out")

	// An admin-role user sees no Users page, and cannot open it.
	b.login("ops", created.MasterKey)
	for _, nav := range []string{"nav-users", "nav-audit"} {
		if eval[bool](b, fmt.Sprintf(`document.getElementById(%q) !== null`, nav)) {
			t.Errorf("an admin sees %s", nav)
		}
	}
	if !eval[bool](b, `document.getElementById('nav-composer') !== null`) {
		t.Error("an admin does not see New run")
	}
	b.do(chromedp.Navigate(s.URL+"/users"), chromedp.WaitVisible(chromedp.ID("page-forbidden")))
	b.do(chromedp.Click(chromedp.ID("nav-platforms")), chromedp.WaitVisible(chromedp.ID("page-platforms")))
	if eval[bool](b, `document.getElementById('platform-add') !== null || document.querySelector('[data-delete]') !== null`) {
		t.Error("an admin is offered to add or delete platforms")
	}
	b.shot("admin")
	if f := b.foreignRequests(); len(f) > 0 {
		t.Errorf("the console tried to reach %q", f)
	}
	if c := b.consoleErrors(); len(c) > 0 {
		t.Errorf("console errors: %q", c)
	}
}

// TestConsoleLargeRunStaysSmooth streams a 500-host run into an open run
// view with four terminal panes and measures the page's main thread: the
// longest task (PerformanceObserver 'longtask') and the longest gap between
// animation frames. The numbers are logged, not asserted: timing depends on
// the machine.
func TestConsoleLargeRunStaysSmooth(t *testing.T) {
	t.Parallel()
	const n = 500
	sshd := testenv.StartSSHD(t)
	s := startServe(t, map[string]string{"TESTUM_MAX_HANDSHAKES": "16"})
	ids := s.fleet(t, sshd, "big", n, 2100, map[string]string{"suite": "large"})
	b := startBrowser(t, s.URL, false)
	b.login(testAdmin, testAdminKey)

	// Twenty lines per host, a tenth of a second apart, then a progress bar
	// redrawn in place by carriage returns.
	cmd := `for i in $(seq 1 20); do echo "line $i from $(hostname) $(date +%s.%N)"; sleep 0.1; done; ` +
		`for i in $(seq 1 20); do printf '\r[%-20s] %3d%%' "$(printf '#%.0s' $(seq 1 $i))" $((i*5)); sleep 0.05; done; echo`
	runID := s.startRun(t, map[string]any{"command": cmd, "parallelism": n, "targets": map[string]any{"platform_ids": ids}})
	b.do(chromedp.Navigate(s.URL+"/runs/"+runID), chromedp.WaitVisible(chromedp.ID("host-table")))
	// Measure from here on: long tasks and the gaps between frames.
	eval[bool](b, `(() => {
		window.__perf = {longest: 0, count: 0, total: 0, maxGap: 0, frames: 0, gaps: []};
		new PerformanceObserver((list) => { for (const e of list.getEntries()) { const p = window.__perf; p.count++; p.total += e.duration; p.longest = Math.max(p.longest, e.duration); } }).observe({type: 'longtask'});
		let last = performance.now();
		const frame = (now) => { const p = window.__perf; const gap = now - last; last = now; p.frames++; p.maxGap = Math.max(p.maxGap, gap); if (p.gaps.length < 200000) p.gaps.push(gap); if (!p.stop) requestAnimationFrame(frame); };
		requestAnimationFrame(frame);
		return true;
	})()`)
	// Rows off screen are not rendered (content-visibility), so click by script.
	for _, h := range []string{"big01", "big02", "big250", "big500"} {
		eval[bool](b, fmt.Sprintf(`(document.querySelector('button[data-open-host=%q]').click(), true)`, h))
	}
	start := time.Now()
	main := b.traceMainThread(func() {
		b.waitFor("the 500-host run to finish", `document.getElementById('page-run').dataset.runState === 'succeeded' || document.getElementById('page-run').dataset.runState === 'failed'`, 8*time.Minute)
	})
	elapsed := time.Since(start)
	b.waitFor("every host ok", fmt.Sprintf(`document.querySelectorAll('#host-rows .host-row[data-state="ok"]').length === %d`, n), waitLimit)
	raw := eval[string](b, `(() => { const p = window.__perf; p.stop = true; const g = p.gaps.slice().sort((a, b) => a - b);
		return JSON.stringify({longest: p.longest, count: p.count, total: p.total, maxGap: p.maxGap, frames: p.frames, p50: g[Math.floor(g.length * .5)] || 0, p99: g[Math.floor(g.length * .99)] || 0}); })()`)
	var perf struct {
		Longest, Total, MaxGap, P50, P99 float64
		Count, Frames                    int
	}
	if err := json.Unmarshal([]byte(raw), &perf); err != nil {
		t.Fatal(err)
	}
	t.Logf("500 hosts streamed in %s: longest task %.0f ms (%d long tasks, %.0f ms in all); frames %d, gap p50 %.1f ms, p99 %.1f ms, max %.0f ms",
		elapsed.Round(time.Second), perf.Longest, perf.Count, perf.Total, perf.Frames, perf.P50, perf.P99, perf.MaxGap)
	t.Logf("renderer main thread: %d tasks busy %s of %s (wall), using %s of CPU",
		main.Tasks, main.Busy.Round(time.Millisecond), elapsed.Round(time.Second), main.CPU.Round(time.Millisecond))
	for _, h := range []string{"big01", "big500"} {
		text := termText(b, h)
		if !strings.Contains(text, "line 20 from") || !strings.Contains(text, "[####################] 100%") {
			t.Errorf("%s terminal lacks the last line or the finished bar:\n%s", h, text)
		}
		if strings.Contains(text, " 50%") {
			t.Errorf("%s terminal kept an overwritten progress bar (carriage return not honoured):\n%s", h, text)
		}
	}
	b.shotViewport("500-hosts")
	if r := s.run(t, runID); (*r.Counts)["ok"] != n {
		t.Fatalf("run %s: %+v", r.State, r.Counts)
	}
	if f := b.foreignRequests(); len(f) > 0 {
		t.Errorf("the console tried to reach %q", f)
	}
}

// TestConsoleIdleLogout: with a short TESTUM_SESSION_IDLE the console warns
// (a minute before the end, so here at once) and returns to the login page
// when the session's idle time is over, as the server ends it too.
func TestConsoleIdleLogout(t *testing.T) {
	t.Parallel()
	s := startServe(t, map[string]string{"TESTUM_SESSION_IDLE": "6s"})
	b := startBrowser(t, s.URL, true)
	b.login(testAdmin, testAdminKey)
	b.do(chromedp.WaitVisible(chromedp.ID("idle-warning")))
	if !strings.Contains(eval[string](b, `document.getElementById('idle-countdown').textContent`), "logged out") {
		t.Error("the idle warning does not say what will happen")
	}
	b.shot("idle-warning")
	b.do(chromedp.WaitVisible(chromedp.ID("login-form")))
	b.waitFor("the reason on the login page", `document.getElementById('login-reason').dataset.i18n === 'login.idle'`, waitLimit)
	b.shot("idle-logged-out")
}
