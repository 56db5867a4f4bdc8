//go:build bench

package main

// The soak of `make soak`: small runs at a steady pace for a long time, with
// WebSocket clients joining and leaving, while the memory of the serve
// process is sampled. A leak shows as heap and goroutines that keep growing
// between the samples.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/testum/testum/libs/testenv"
)

var (
	soakDuration = flag.Duration("soak.duration", 0, "how long the soak starts runs (0: no soak)")
	soakEvery    = flag.Duration("soak.every", 2*time.Second, "time between two runs of the soak")
	soakProfile  = flag.String("soak.profile", "", "directory for heap profiles at the soak's start, middle and end (empty: none)")
)

const (
	soakPlatforms    = 6 // hosts the runs rotate over
	soakHostsPerRun  = 3
	soakSessions     = 4               // logins the WebSockets are spread over (a session may hold 32 at once)
	soakClientWait   = 2 * time.Minute // hang guard of one run's clients
	soakMaxMessages  = 1000            // of one WebSocket; an `echo` run sends a dozen
	soakWarmupRuns   = 5
	soakSampleSettle = 3 * time.Second // after the last client, before the end sample
)

// soakSample is the process's memory at one moment, after a forced GC, so
// that the heap figures are what is still referenced.
type soakSample struct {
	label      string
	elapsed    time.Duration
	runs       int64
	sockets    int64
	rss        int64
	heapInuse  uint64
	heapAlloc  uint64
	goroutines int
}

// soakHeading starts the soak's section of the benchmark report.
const soakHeading = "## Soak"

func TestSoak(t *testing.T) {
	if *soakDuration <= 0 {
		t.Skip("no soak asked for: make soak (SOAK=30m), or -soak.duration")
	}
	ticks := int(*soakDuration / *soakEvery)
	if ticks < 2 {
		t.Fatalf("-soak.duration %s allows fewer than two runs at -soak.every %s", *soakDuration, *soakEvery)
	}
	if d, ok := t.Deadline(); ok && time.Until(d) < *soakDuration+10*time.Minute {
		t.Fatalf("-timeout ends %s from now, too soon for a %s soak: raise it (SOAK_TIMEOUT)", time.Until(d).Round(time.Minute), *soakDuration)
	}
	loadBefore := loadAverage()
	sshd := testenv.StartSSHD(t)
	s := startServe(t, map[string]string{"TESTUM_LOG_LEVEL": "error"})
	var ids []int64
	for i := range soakPlatforms {
		ids = append(ids, s.createPlatform(t, map[string]any{"name": fmt.Sprintf("soak%02d", i), "host": sshd.Addr(i),
			"port": sshd.Port, "username": sshd.KeyUser.Name, "auth_method": "private_key", "private_key": string(sshd.KeyUser.KeyPEM)}))
	}
	sk := &soaker{base: s.URL, http: &http.Client{Timeout: time.Minute}}
	for range soakSessions {
		sk.tokens = append(sk.tokens, sk.login(t))
	}
	// Warm-up: first contact pins the host keys, the pools and caches fill.
	for i := range soakWarmupRuns {
		if err := sk.cycle(context.Background(), i, ids); err != nil {
			t.Fatalf("warm-up run %d: %v", i, err)
		}
	}

	start := time.Now()
	var samples []soakSample
	sample := func(label string) {
		samples = append(samples, sk.sample(t, label, time.Since(start)))
		t.Logf("soak %s: %s", label, samples[len(samples)-1])
	}
	sample("start")
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []error
	)
	tick := time.NewTicker(*soakEvery)
	defer tick.Stop()
	for i := range ticks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), soakClientWait)
			defer cancel()
			if err := sk.cycle(ctx, soakWarmupRuns+i, ids); err != nil {
				mu.Lock()
				failures = append(failures, fmt.Errorf("run %d: %w", i, err))
				mu.Unlock()
			}
		}()
		if i == ticks/2 {
			sample("middle")
		} else if i%30 == 0 {
			s := sk.sample(t, "", time.Since(start))
			t.Logf("soak progress: %s", s)
		}
		<-tick.C
	}
	wg.Wait()
	// The last clients have closed; let the gateway notice before looking.
	time.Sleep(soakSampleSettle)
	sample("end")
	loadAfter := loadAverage()
	mu.Lock()
	defer mu.Unlock()
	for i, err := range failures {
		if i < 20 {
			t.Error(err)
		}
	}
	if len(failures) > 0 {
		t.Fatalf("%d of %d runs failed or their clients did", len(failures), ticks)
	}
	report := sk.report(samples, loadBefore, loadAfter)
	fmt.Print(report)
	if err := writeSection(*benchOut, soakHeading, report); err != nil {
		t.Fatal(err)
	}
}

// soaker drives a server's API and WebSockets without the test's
// contract-checking client, so that the test process adds as little as
// possible to the memory it measures.
type soaker struct {
	base    string
	http    *http.Client
	tokens  []string
	runs    atomic.Int64
	sockets atomic.Int64
}

func (sm soakSample) String() string {
	return fmt.Sprintf("after %s: %d runs, %d WebSockets, RSS %.1f MiB, HeapInuse %.1f MiB, HeapAlloc %.1f MiB, %d goroutines",
		sm.elapsed.Round(time.Second), sm.runs, sm.sockets, mib(sm.rss), mib(int64(sm.heapInuse)), mib(int64(sm.heapAlloc)), sm.goroutines)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func (s *soaker) sample(t *testing.T, label string, elapsed time.Duration) soakSample {
	// Twice: the first GC moves sync.Pool contents to the pools' victim
	// caches, the second frees them, so pooled buffers do not count.
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	sm := soakSample{label: label, elapsed: elapsed, runs: s.runs.Load(), sockets: s.sockets.Load(),
		rss: procStatus(t, os.Getpid(), "VmRSS"), heapInuse: ms.HeapInuse, heapAlloc: ms.HeapAlloc, goroutines: runtime.NumGoroutine()}
	if *soakProfile != "" && label != "" {
		if err := os.MkdirAll(*soakProfile, 0o755); err != nil {
			t.Fatal(err)
		}
		writeProfile("heap", filepath.Join(*soakProfile, "soak-"+label+".heap.pprof"))
		writeProfile("goroutine", filepath.Join(*soakProfile, "soak-"+label+".goroutine.pprof"))
	}
	return sm
}

func (s *soaker) login(t *testing.T) string {
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := s.do(context.Background(), "", "POST", "/api/auth/login",
		map[string]string{"username": testAdmin, "password": testAdminKey}, &out); err != nil {
		t.Fatal(err)
	}
	return out.AccessToken
}

func (s *soaker) do(ctx context.Context, token, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// soakMsg is the part of a WebSocket message the soak checks.
type soakMsg struct {
	Type    string `json:"type"`
	Host    string `json:"host"`
	Seq     uint64 `json:"seq"`
	Payload string `json:"payload"`
}

// cycle is one run of the soak: `echo` on a few hosts, watched by four
// WebSockets — one from the start to done, one that leaves after its first
// message (mid-run, without a close frame), one that replays the whole
// transcript after the run ended, and one that then resumes after a
// message of the middle (`since`). The run must succeed and every watcher
// that stays must see each host's output and done.
func (s *soaker) cycle(ctx context.Context, n int, ids []int64) error {
	tok := s.tokens[n%len(s.tokens)]
	var hosts []int64
	for i := range soakHostsPerRun {
		hosts = append(hosts, ids[(n+i)%len(ids)])
	}
	want := fmt.Sprintf("soak %d\n", n)
	var created struct {
		ID string `json:"id"`
	}
	if err := s.do(ctx, tok, "POST", "/api/runs", map[string]any{"command": "echo " + strings.TrimSpace(want),
		"timeout": 60, "targets": map[string]any{"platform_ids": hosts}}, &created); err != nil {
		return err
	}
	s.runs.Add(1)
	check := func(what string, msgs []soakMsg) error {
		out := map[string]string{}
		for _, m := range msgs {
			if m.Type == "stdout" {
				out[m.Host] += m.Payload
			}
		}
		if len(out) != soakHostsPerRun {
			return fmt.Errorf("%s: stdout of %d hosts, want %d: %v", what, len(out), soakHostsPerRun, out)
		}
		for h, o := range out {
			if o != want {
				return fmt.Errorf("%s: host %s wrote %q, want %q", what, h, o, want)
			}
		}
		if last := msgs[len(msgs)-1]; last.Type != "done" || last.Payload != "succeeded" {
			return fmt.Errorf("%s: ended with %s %q, want done succeeded", what, last.Type, last.Payload)
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		msgs, err := s.watch(ctx, tok, created.ID, 0, 0)
		if err == nil {
			err = check("live watcher", msgs)
		}
		errs[0] = err
	}()
	go func() {
		defer wg.Done()
		_, errs[1] = s.watch(ctx, tok, created.ID, 0, 1)
	}()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// The live watcher saw done: the run is over. Replay it, then resume.
	all, err := s.watch(ctx, tok, created.ID, 0, 0)
	if err == nil {
		err = check("replay after the end", all)
	}
	if err != nil {
		return err
	}
	since := all[len(all)/2].Seq
	rest, err := s.watch(ctx, tok, created.ID, since, 0)
	if err != nil {
		return err
	}
	if len(rest) == 0 || rest[0].Seq <= since || rest[len(rest)-1].Type != "done" {
		return fmt.Errorf("resume after seq %d: got %d messages %+v", since, len(rest), rest)
	}
	return nil
}

// watch reads a run's WebSocket (after since) until done, or until limit
// messages when limit > 0, then drops the connection without a close frame.
func (s *soaker) watch(ctx context.Context, tok, id string, since uint64, limit int) ([]soakMsg, error) {
	u := strings.Replace(s.base, "http://", "ws://", 1) + "/ws/tasks/" + id
	if since > 0 {
		u += fmt.Sprintf("?since=%d", since)
	}
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, u, http.Header{"Origin": {s.base}, "Authorization": {"Bearer " + tok}})
	if err != nil {
		return nil, fmt.Errorf("websocket %s: %w", id, err)
	}
	s.sockets.Add(1)
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	var msgs []soakMsg
	for len(msgs) < soakMaxMessages {
		if !deadline.IsZero() {
			_ = conn.SetReadDeadline(deadline)
		}
		var m soakMsg
		if err := conn.ReadJSON(&m); err != nil {
			return msgs, fmt.Errorf("websocket %s (since %d): read after %d messages: %w", id, since, len(msgs), err)
		}
		msgs = append(msgs, m)
		if m.Type == "done" || (limit > 0 && len(msgs) >= limit) {
			return msgs, nil
		}
	}
	return msgs, fmt.Errorf("websocket %s: no done after %d messages", id, len(msgs))
}

// report is the soak's section of docs/benchmarks.md.
func (s *soaker) report(samples []soakSample, loadBefore, loadAfter string) string {
	var b strings.Builder
	args := fmt.Sprintf("-soak.duration=%s", *soakDuration)
	var extra []string // flags beyond the duration, as SOAK_ARGS
	if *soakEvery != 2*time.Second {
		extra = append(extra, fmt.Sprintf("-soak.every=%s", *soakEvery))
	}
	if *soakProfile != "" {
		extra = append(extra, "-soak.profile="+*soakProfile)
	}
	makeCmd := fmt.Sprintf("make soak SOAK=%s", *soakDuration)
	if len(extra) > 0 {
		makeCmd += fmt.Sprintf(" SOAK_ARGS='%s'", strings.Join(extra, " "))
		args += " " + strings.Join(extra, " ")
	}
	fmt.Fprintf(&b, soakHeading+"\n\nMeasured %s UTC on %d cores (%s RAM), %s. Load average (1 min) %s before, %s after: %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04"), runtime.NumCPU(), memTotal(), kernel(), loadBefore, loadAfter,
		quietness(loadBefore, loadAfter))
	fmt.Fprintf(&b, "Command: `%s` — that is `go test -tags bench -run TestSoak -count=1 -v ./services/testum/ -args %s`.\n\n",
		makeCmd, args)
	last := samples[len(samples)-1]
	fmt.Fprintf(&b, "A run every %s for %s (%d runs after %d warm-up runs), each `echo` on %d of %d loopback hosts, watched by four "+
		"WebSockets: one from the start to `done`, one that leaves after its first message without a close frame, one that "+
		"replays the transcript after the run ended, and one that resumes from the middle with `?since=` (%d WebSockets in all). "+
		"Every run succeeded and every watcher saw each host's output. `testum serve` runs in the test process (`run()`, with its "+
		"embedded NATS; PostgreSQL and sshd are other processes), so the figures are that process's, after two forced GCs (which also empty the `sync.Pool`s): RSS "+
		"(VmRSS of /proc/self/status), Go heap (`runtime.MemStats` HeapInuse and HeapAlloc), goroutines. The end sample is "+
		"taken %s after the last WebSocket closed.\n\n",
		*soakEvery, *soakDuration, last.runs, soakWarmupRuns, soakHostsPerRun, soakPlatforms, last.sockets, soakSampleSettle)
	b.WriteString("| sample | elapsed | runs | WebSockets | RSS MiB | HeapInuse MiB | HeapAlloc MiB | goroutines |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, sm := range samples {
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %.1f | %.1f | %.1f | %d |\n", sm.label, sm.elapsed.Round(time.Second), sm.runs,
			sm.sockets, mib(sm.rss), mib(int64(sm.heapInuse)), mib(int64(sm.heapAlloc)), sm.goroutines)
	}
	b.WriteString("\n")
	return b.String()
}

func TestSplitSection(t *testing.T) {
	for _, c := range []struct{ name, doc, before, after string }{
		{"none", "# B\n\n## A\n\nx\n", "# B\n\n## A\n\nx\n", ""},
		{"last", "# B\n\n## A\n\nx\n\n## Soak\n\ny\n", "# B\n\n## A\n\nx\n\n", ""},
		{"middle", "# B\n\n## Soak\n\ny\n\n## C\n\nz\n", "# B\n\n", "## C\n\nz\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if b, a := splitSection(c.doc, soakHeading); b != c.before || a != c.after {
				t.Fatalf("split %q: %q, %q", c.doc, b, a)
			}
		})
	}
}
