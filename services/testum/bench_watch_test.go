//go:build bench

package main

// The watcher and API-latency figures of the benchmark: many WebSocket
// clients of one large run, and GET /api/runs/{id} at a steady rate while
// a large run executes. Both run against a `testum gateway` process of its
// own (with one `testum executor` process, one NATS server and one
// PostgreSQL, as in production), so that the gateway's CPU is the gateway
// process's alone: the clients run in the test process.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/testenv"
)

const (
	// watchCmd writes 1024 bytes that differ line by line, so that a byte
	// lost, doubled or out of order shows in the comparison.
	watchCmd     = "seq -w 0 255"
	watchClients = 20
	// loadCmd lasts long enough for the API to be read while hosts run.
	loadCmd  = "sleep 1; head -c 1024 /dev/zero"
	loadRate = 100 // GET /api/runs/{id} per second
	// loadInFlight bounds the requests waiting for an answer; a tick that
	// finds them all taken sends nothing and is counted.
	loadInFlight = 1000
)

// watchWant is what watchCmd writes on each host.
var watchWant = func() string {
	var b strings.Builder
	for i := range 256 {
		fmt.Fprintf(&b, "%03d\n", i)
	}
	return b.String()
}()

// watchResult holds the watcher and API-latency figures.
type watchResult struct {
	hosts, reps int
	// POST /api/runs → the last client's done, with one watcher and with
	// watchClients, interleaved.
	wall1, wallN []time.Duration
	// The gateway process's CPU over the same spans.
	cpu1, cpuN []time.Duration

	busy, idle  latencySample
	answerBytes int           // one answer of GET /api/runs/{id} for the loaded run
	loadWall    time.Duration // the loaded run: POST → an answer showed it final
	loadCPU     time.Duration // the gateway's CPU over the same
}

// perWatcher is the gateway CPU one more watcher costs: the medians with
// watchClients and with one, their difference shared among the others.
func (r watchResult) perWatcher() time.Duration {
	return (median(r.cpuN) - median(r.cpu1)) / (watchClients - 1)
}

// latencySample is what the steady GETs measured.
type latencySample struct {
	lat     []time.Duration // of the 200 answers: due → last byte
	non200  int             // answers of another status, and requests that got none
	skipped int             // ticks that found loadInFlight requests unanswered
	span    time.Duration   // first tick → last answer
}

func (l latencySample) sent() int { return len(l.lat) + l.non200 }

func (l latencySample) quantile(q float64) time.Duration {
	if len(l.lat) == 0 {
		return 0
	}
	s := slices.Clone(l.lat)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// watchHosts is the size of the watched and the loaded run.
func watchHosts() int {
	if *benchShort {
		return 100
	}
	return 1000
}

// TestWatchBench runs only the watcher and API-latency figures and logs
// their report sections, for working on them (TestBench runs them too; the
// name does not start with TestBench so that `make bench`, -run TestBench,
// does not run them twice):
//
//	go test -tags bench -run 'TestWatchBench$' -count=1 -v ./services/testum -args -bench.short=true
func TestWatchBench(t *testing.T) {
	reps := *benchReps
	if reps <= 0 {
		reps = 1
		if !*benchShort {
			reps = 3
		}
	}
	sshd := testenv.StartSSHD(t)
	e := &benchEnv{sshd: sshd, user: sshd.KeyUser.Name, port: sshd.Port}
	start := time.Now()
	r := e.watch(t, watchHosts(), reps)
	t.Logf("%d hosts, %d rep(s): %.0f s, process start and platforms included\n\n%s",
		r.hosts, reps, time.Since(start).Seconds(), r.markdown())
}

// watch starts a gateway and an executor as separate processes, creates n
// platforms on e's sshd and pins their host keys, then measures: reps
// rounds of one run of watchCmd on the n hosts watched by one WebSocket
// client and of another watched by watchClients, each client checking
// every byte; then the API latency during a run of loadCmd and on the
// idle gateway.
func (e *benchEnv) watch(t *testing.T, n, reps int) watchResult {
	env := splitRolesEnv(t, "1024")
	gw := startProcess(t, env, "gateway")
	s := &server{URL: gw.waitURL(t)}
	s.login(t)
	startProcess(t, env, "executor").waitExecutorID(t)
	gwPID := gw.cmd.Process.Pid

	ids := make([]int64, n)
	for i := range ids {
		ids[i] = s.createPlatform(t, map[string]any{"name": fmt.Sprintf("v%04d", i), "host": e.sshd.Addr(i),
			"port": e.port, "username": e.user, "auth_method": "private_key", "private_key": string(e.sshd.KeyUser.KeyPEM)})
	}
	// First contact pins the host keys, outside the timings.
	if _, err := runOn(t, s, ids, "echo ok", "ok\n"); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	r := watchResult{hosts: n, reps: reps}
	for rep := range reps {
		for _, clients := range []int{1, watchClients} {
			wall, cpu, err := watchOnce(t, s, ids, clients, gwPID)
			if err != nil {
				t.Fatalf("%d watcher(s) of %d hosts (round %d): %v", clients, n, rep+1, err)
			}
			if clients == 1 {
				r.wall1, r.cpu1 = append(r.wall1, wall), append(r.cpu1, cpu)
			} else {
				r.wallN, r.cpuN = append(r.wallN, wall), append(r.cpuN, cpu)
			}
		}
	}
	t.Logf("watchers of %d hosts: done", n)

	cpu0 := procCPU(t, gwPID)
	start := time.Now()
	runID := s.startRun(t, map[string]any{"command": loadCmd, "parallelism": n, "timeout": 600,
		"targets": map[string]any{"platform_ids": ids}})
	client := &http.Client{Timeout: waitLimit, Transport: &http.Transport{MaxIdleConnsPerHost: loadInFlight}}
	defer client.CloseIdleConnections()
	getURL := s.URL + "/api/runs/" + runID
	var err error
	r.busy, _, err = steadyGets(client, getURL, 0)
	r.loadWall, r.loadCPU = time.Since(start), procCPU(t, gwPID)-cpu0
	if err != nil {
		t.Fatalf("API latency during the run: %v", err)
	}
	if run := s.waitRun(t, runID); run.State != "succeeded" || (*run.Counts)["ok"] != n {
		t.Fatalf("the loaded run ended %s: %+v", run.State, run.Counts)
	}
	// The same count against the idle gateway, the same run (now final).
	if r.idle, r.answerBytes, err = steadyGets(client, getURL, r.busy.sent()+r.busy.skipped); err != nil {
		t.Fatalf("API latency on the idle gateway: %v", err)
	}
	t.Logf("API latency on %d hosts: done", n)
	return r
}

// watchOnce starts a run of watchCmd on ids and has clients WebSocket
// clients watch it from its start, each checking every host's bytes. It
// returns POST → the last client's done, and the gateway's CPU over it.
func watchOnce(t *testing.T, s *server, ids []int64, clients, gwPID int) (time.Duration, time.Duration, error) {
	cpu0 := procCPU(t, gwPID)
	start := time.Now()
	runID := s.startRun(t, map[string]any{"command": watchCmd, "parallelism": len(ids), "timeout": 600,
		"targets": map[string]any{"platform_ids": ids}})
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[c] = s.watchRun(runID, len(ids))
		}()
	}
	wg.Wait()
	wall, cpu := time.Since(start), procCPU(t, gwPID)-cpu0
	for c, err := range errs {
		if err != nil {
			return 0, 0, fmt.Errorf("client %d: %w", c+1, err)
		}
	}
	if run := s.waitRun(t, runID); run.State != "succeeded" {
		return 0, 0, fmt.Errorf("run ended %s: %+v", run.State, run.Counts)
	}
	return wall, cpu, nil
}

// watchRun reads a run's WebSocket (JSON messages) from its start until
// done, and checks that each of its n hosts wrote exactly watchWant on
// stdout and nothing on stderr.
func (s *server) watchRun(id string, n int) error {
	conn, resp, err := websocket.DefaultDialer.Dial(s.wsURL(id, 0), http.Header{"Origin": {s.URL},
		"Authorization": {"Bearer " + tokenFor(s.URL)}})
	if err != nil {
		if resp != nil {
			return fmt.Errorf("websocket: %w: status %d", err, resp.StatusCode)
		}
		return fmt.Errorf("websocket: %w", err)
	}
	defer conn.Close()
	stdout := make([][]byte, n)
	var stderr int
	// Every host sends a few messages (status, output, exit): the bound is
	// generous.
	for msgs := 0; msgs < 100*n+1000; msgs++ {
		_ = conn.SetReadDeadline(time.Now().Add(waitLimit))
		_, data, err := conn.ReadMessage()
		if err != nil {
			return fmt.Errorf("websocket read after %d messages: %w", msgs, err)
		}
		var m apiclient.WSMessage
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("websocket message %d: %w", msgs, err)
		}
		switch m.Type {
		case "stdout", "stderr":
			idx := val(m.Idx)
			if m.Idx == nil || idx < 0 || idx >= n {
				return fmt.Errorf("%s message %d for host index %v of %d", m.Type, msgs, m.Idx, n)
			}
			payload := []byte(m.Payload)
			if val(m.Encoding) == apiclient.Base64 {
				if payload, err = base64.StdEncoding.DecodeString(m.Payload); err != nil {
					return fmt.Errorf("base64 payload of message %d: %w", msgs, err)
				}
			}
			if m.Type == "stderr" {
				stderr += len(payload)
				continue
			}
			stdout[idx] = append(stdout[idx], payload...)
		case "done":
			var wrong []string
			for i, out := range stdout {
				if string(out) != watchWant && len(wrong) < 5 {
					wrong = append(wrong, fmt.Sprintf("host %d: %d bytes %.40q…", i, len(out), out))
				}
			}
			if len(wrong) > 0 || stderr > 0 {
				return fmt.Errorf("done (%s) after %d messages, hosts not matching the %d bytes: %s; %d bytes of stderr",
					val(m.State), msgs, len(watchWant), strings.Join(wrong, "; "), stderr)
			}
			return nil
		}
	}
	return fmt.Errorf("no done after %d messages", 100*n+1000)
}

// steadyGets sends GET u at loadRate requests per second, open loop: each
// when it is due whatever the earlier ones' answers, its latency counted
// from when it was due to the last byte of its answer. With count > 0 it
// sends count requests; with 0 it sends until an answer shows the run
// final (one in ten is decoded for that, to keep the client's CPU low).
// It returns the sample and the size of one answer.
func steadyGets(client *http.Client, u string, count int) (latencySample, int, error) {
	var (
		mu     sync.Mutex
		l      latencySample
		size   int
		final  = make(chan struct{})
		once   sync.Once
		wg     sync.WaitGroup
		slots  = make(chan struct{}, loadInFlight)
		limit  = count
		header = http.Header{"Authorization": {"Bearer " + tokenFor(u)}}
	)
	if limit == 0 {
		limit = 10 * 60 * loadRate // a run ten minutes long is stuck: stop there
	}
	get := func(i int, tick time.Time) {
		defer func() { <-slots; wg.Done() }()
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			panic(err) // u is ours
		}
		req.Header = header.Clone()
		resp, err := client.Do(req)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
		}
		lat := time.Since(tick)
		mu.Lock()
		if err != nil || resp.StatusCode != http.StatusOK {
			l.non200++
		} else {
			l.lat = append(l.lat, lat)
			size = len(body)
		}
		mu.Unlock()
		if count == 0 && err == nil && resp.StatusCode == http.StatusOK && i%10 == 0 {
			var run struct {
				State string `json:"state"`
			}
			if json.Unmarshal(body, &run) == nil && finalRunState(run.State) {
				once.Do(func() { close(final) })
			}
		}
	}
	interval := time.Second / loadRate
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	first := time.Now()
	due := func(i int) time.Time { return first.Add(time.Duration(i+1) * interval) }
	sent := 0
loop:
	for sent < limit {
		select {
		case <-final:
			break loop
		case <-ticker.C:
			now := time.Now()
			// Every request due by now: the ticker drops the ticks this
			// goroutine was too late for (a loaded machine), and those are
			// sent late, timed from when they were due.
			for ; sent < limit && !due(sent).After(now); sent++ {
				select {
				case slots <- struct{}{}:
					wg.Add(1)
					go get(sent, due(sent))
				default:
					l.skipped++
				}
			}
		}
	}
	wg.Wait()
	l.span = time.Since(first)
	if count == 0 && sent == limit {
		return l, size, fmt.Errorf("the run was not final after %d requests", sent)
	}
	return l, size, nil
}

func finalRunState(s string) bool {
	switch s {
	case "succeeded", "failed", "canceled", "aborted":
		return true
	}
	return false
}

// procCPU is the CPU time (user and system) process pid has used, from
// /proc/PID/stat, in clock ticks of 10 ms (USER_HZ is 100 on Linux).
func procCPU(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// pid (comm) state ppid …: comm may hold spaces, so read after its ')';
	// utime and stime are the 14th and 15th fields of the line.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		t.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("/proc/%d/stat: %q", pid, b)
		}
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// markdown is the report's sections for these figures.
func (r watchResult) markdown() string {
	var b strings.Builder
	relayed := r.hosts * len(watchWant)
	fmt.Fprintf(&b, "## Watchers\n\n%d WebSocket clients of `/ws/tasks/{run}` (JSON messages) watch one run of `%s` (%d bytes per host) "+
		"on %d hosts at parallelism %d, every client connected right after POST /api/runs and reading from the run's start; each "+
		"checks every host's %d stdout bytes, byte for byte, and `done` (the benchmark fails otherwise). The gateway is a `testum gateway` "+
		"process of its own, with one `testum executor` process, one NATS server and one PostgreSQL (connection reuse off); the clients "+
		"run in the test process. %d round(s), each a run watched by 1 client then a run watched by %d, medians reported. "+
		"POST → the last client's `done`: %.2f s with %d clients, %.2f s with 1. Gateway CPU (the gateway process's user + system time "+
		"from /proc/PID/stat, 10 ms ticks, read just before the POST and after the last `done`): %.2f s with %d clients, %.2f s with 1, "+
		"**%.0f ms per watcher** ((%d-client − 1-client) / %d), that is %.1f µs per KiB relayed to one more client (%d KiB each).\n\n",
		watchClients, watchCmd, len(watchWant), r.hosts, r.hosts, len(watchWant), r.reps, watchClients,
		median(r.wallN).Seconds(), watchClients, median(r.wall1).Seconds(),
		median(r.cpuN).Seconds(), watchClients, median(r.cpu1).Seconds(), ms(r.perWatcher()), watchClients, watchClients-1,
		float64(r.perWatcher().Microseconds())/(float64(relayed)/1024), relayed/1024)
	row := func(name string, l latencySample) string {
		return fmt.Sprintf("| %s | %d in %.1f s | %.1f | %.1f | %.1f | %d |\n", name, l.sent(), l.span.Seconds(),
			ms(l.quantile(0.50)), ms(l.quantile(0.99)), ms(l.quantile(1)), l.non200+l.skipped)
	}
	fmt.Fprintf(&b, "## API latency under load\n\n`GET /api/runs/{id}` of a %d-host run (the run with its hosts: an answer of %.0f KB) at %d "+
		"requests/s, open loop: request i is due %d ms × i after the first and is sent then (or at once when the sender was late) "+
		"whether or not the earlier ones were answered (at most %d unanswered), and its latency runs from when it was due to the last "+
		"byte of the answer. Under load: while a run of `%s` "+
		"executes on those %d hosts at parallelism %d (same processes as above), from its POST until an answer shows it final "+
		"(%.1f s; the gateway process used %.1f s of CPU meanwhile). Idle: the same number of requests right after, for the same run, "+
		"nothing else running. Latencies are of the 200 answers; the last column counts the others, requests that got no answer, and "+
		"ticks skipped at the bound.\n\n| gateway | requests | p50 ms | p99 ms | max ms | non-200 |\n|---|---|---|---|---|---|\n",
		r.hosts, float64(r.answerBytes)/1000, loadRate, 1000/loadRate, loadInFlight, loadCmd, r.hosts, r.hosts,
		r.loadWall.Seconds(), r.loadCPU.Seconds())
	b.WriteString(row("while the run executes", r.busy))
	b.WriteString(row("idle", r.idle))
	b.WriteString("\n")
	return b.String()
}
