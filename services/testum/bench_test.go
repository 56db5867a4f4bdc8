//go:build bench

package main

// The benchmark of `make bench`: testum against a bare Go floor and the
// tools operators would otherwise use, on the same loopback hosts (one
// dedicated sshd), each figure the median of several runs interleaved so
// that the machine's drift cancels out. It writes docs/benchmarks.md.

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"golang.org/x/crypto/ssh"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/testenv"
)

var (
	benchShort   = flag.Bool("bench.short", true, "N ≤ 100 only (about two minutes)")
	benchReps    = flag.Int("bench.reps", 0, "runs per figure, the median is reported (0: 1 in short mode, 3 in full mode)")
	benchOut     = flag.String("bench.out", "../../docs/benchmarks.md", "where to write the results (the PNG goes beside it)")
	benchFanout  = flag.Bool("bench.fanout", true, "run the fan-out comparison (false: only the other parts, while developing them)")
	benchProfile = flag.String("bench.profile", "", "directory for pprof profiles of the streaming run (empty: none)")
)

// peer is one way to run a command on hosts; it returns an error unless
// every host answered with the expected output.
type peer struct {
	name string
	run  func(t *testing.T, hosts []string, cmd, want string) error
}

type benchEnv struct {
	sshd    *testenv.SSHD
	keyFile string
	user    string
	port    int
	srv     *server // connection reuse off: every run pays every handshake, as the peers do
	ids     []int64 // platform ids, host i at ids[i]
	warm    *server // the defaults: connections kept for the next run
	warmIDs []int64
}

func TestBench(t *testing.T) {
	sizes := []int{10, 100}
	memSessions, scaleN := 200, 100
	if !*benchShort {
		sizes = append(sizes, 500, 1000)
		memSessions, scaleN = 1000, 500
	}
	reps := *benchReps
	if reps <= 0 {
		reps = 1 // short: one interleaved round keeps it within a few minutes
		if !*benchShort {
			reps = 3
		}
	}
	loadBefore := loadAverage()
	sshd := testenv.StartSSHD(t)
	e := &benchEnv{sshd: sshd, user: sshd.KeyUser.Name, port: sshd.Port}
	e.keyFile = filepath.Join(t.TempDir(), "id")
	if err := os.WriteFile(e.keyFile, sshd.KeyUser.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	// The output cap is raised above the streaming benchmark's 200 MB, so
	// that the whole stream is relayed.
	// The fan-out comparison runs with connection reuse off
	// (TESTUM_CONN_IDLE=0): every run pays every handshake, as each peer's
	// does. The repeat run uses a second serve with the defaults.
	e.srv = startServe(t, map[string]string{"TESTUM_LOG_LEVEL": "error", "TESTUM_MAX_HANDSHAKES": "64",
		"TESTUM_EXECUTOR_SLOTS": "1024", "TESTUM_OUTPUT_CAP": "256MiB", "TESTUM_CONN_IDLE": "0"})
	e.warm = startServe(t, map[string]string{"TESTUM_LOG_LEVEL": "error", "TESTUM_MAX_HANDSHAKES": "64",
		"TESTUM_EXECUTOR_SLOTS": "1024"})
	hosts := make([]string, slices.Max(sizes))
	for i := range hosts {
		hosts[i] = sshd.Addr(i)
		e.ids = append(e.ids, e.srv.createPlatform(t, map[string]any{"name": fmt.Sprintf("b%04d", i), "host": hosts[i],
			"port": sshd.Port, "username": e.user, "auth_method": "private_key", "private_key": string(sshd.KeyUser.KeyPEM)}))
	}
	for i := range 100 {
		e.warmIDs = append(e.warmIDs, e.warm.createPlatform(t, map[string]any{"name": fmt.Sprintf("w%04d", i), "host": hosts[i],
			"port": sshd.Port, "username": e.user, "auth_method": "private_key", "private_key": string(sshd.KeyUser.KeyPEM)}))
	}
	// First contact pins every host key (auto_add), outside the timings.
	if err := e.testum(t, hosts, "echo ok", "ok\n"); err != nil {
		t.Fatal(err)
	}
	// The separate processes need the binary: build it before measuring.
	testumBinary(t)
	measureStart := time.Now()

	peers := []peer{
		{"Go floor", e.floor},
		{"testum", e.testum},
		{"pdsh", e.pdsh},
		{"parallel-ssh", e.pssh},
		{"clush", e.clush},
		{"ansible raw", e.ansible},
	}
	kib := strings.Repeat("x", 1024) + "\n"
	type key struct {
		cmd  string
		n    int
		peer string
	}
	results := map[key][]time.Duration{}
	cmds := []struct{ label, cmd, want string }{
		{"echo ok", "echo ok", "ok\n"},
		{"1 KiB", "head -c 1024 /dev/zero | tr '\\0' x; echo", kib},
	}
	for _, c := range cmds {
		for _, n := range sizes {
			for rep := range reps * boolInt(*benchFanout) {
				for _, p := range peers { // interleaved: one run of each tool, then again
					start := time.Now()
					if err := p.run(t, hosts[:n], c.cmd, c.want); err != nil {
						t.Fatalf("%s, %s on %d hosts (run %d): %v", p.name, c.label, n, rep+1, err)
					}
					results[key{c.label, n, p.name}] = append(results[key{c.label, n, p.name}], time.Since(start))
				}
			}
			t.Logf("%s on %d hosts: done", c.label, n)
		}
	}
	// Repeat run: the same run again right after a first one, on a serve
	// that keeps connections (the default), against the floor (which opens
	// a new connection per host every time).
	if _, err := runOn(t, e.warm, e.warmIDs, "echo ok", "ok\n"); err != nil {
		t.Fatal(err)
	}
	var repeat, repeatFloor []time.Duration
	for range reps {
		start := time.Now()
		if _, err := runOn(t, e.warm, e.warmIDs, "echo ok", "ok\n"); err != nil {
			t.Fatal(err)
		}
		repeat = append(repeat, time.Since(start))
		start = time.Now()
		if err := e.floor(t, hosts[:100], "echo ok", "ok\n"); err != nil {
			t.Fatal(err)
		}
		repeatFloor = append(repeatFloor, time.Since(start))
	}
	t.Log("repeat run: done")
	var fanProfile string
	if *benchProfile != "" {
		fanProfile = filepath.Join(*benchProfile, "fanout.cpu.pprof")
	}
	timeline := e.runTimeline(t, hosts[:100], fanProfile)
	fb, fbSSH := e.firstByte(t, hosts[0], 50)
	var fbWarm []time.Duration // the same on a kept connection
	for range 50 {
		start := time.Now()
		runID := e.warm.startRun(t, map[string]any{"command": "echo hi", "targets": map[string]any{"platform_ids": []int64{e.warmIDs[0]}}})
		if got := e.warm.wsFirst(t, runID, "stdout"); got != "hi\n" {
			t.Fatalf("first stdout %q", got)
		}
		fbWarm = append(fbWarm, time.Since(start))
		e.warm.waitRun(t, runID) // its connection is back in the pool
	}
	t.Log("first byte: done")
	st := e.streaming(t, hosts[0], e.ids[0], reps, *benchProfile)
	t.Log("streaming: done")
	pr := e.processes(t, memSessions, scaleN, reps)
	t.Log("executor processes: done")
	// Watchers and API latency (bench_watch_test.go).
	watched := e.watch(t, watchHosts(), reps)
	t.Log("watchers and API latency: done")
	measured := time.Since(measureStart)
	loadAfter := loadAverage()

	// The report.
	med := func(label string, n int, p string) time.Duration { return median(results[key{label, n, p}]) }
	ratio := func(label string, n int, p string) float64 {
		return med(label, n, p).Seconds() / med(label, n, "Go floor").Seconds()
	}
	var b strings.Builder
	now := time.Now().UTC()
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	fmt.Fprintf(&b, "Measured %s UTC on %d cores (%s, %s RAM), %s, %s; one OpenSSH sshd serving 127.0.x.y as hosts, key authentication. "+
		"Load average (1 min) %s before, %s after: %s.\n\n",
		now.Format("2006-01-02 15:04"), runtime.NumCPU(), cpuModel(), memTotal(), kernel(), toolVersion("ssh", "-V"),
		loadBefore, loadAfter, quietness(loadBefore, loadAfter))
	makeCmd := map[bool]string{true: "make bench", false: "make bench FULL=1"}[*benchShort]
	var extra []string // flags given beyond -bench.short and -bench.reps
	if !*benchFanout {
		extra = append(extra, "-bench.fanout=false")
	}
	if *benchProfile != "" {
		extra = append(extra, "-bench.profile="+*benchProfile)
	}
	makeArgs := extra
	if *benchReps > 0 {
		makeArgs = append([]string{fmt.Sprintf("-bench.reps=%d", *benchReps)}, extra...)
	}
	if len(makeArgs) > 0 {
		makeCmd += fmt.Sprintf(" BENCH_ARGS='%s'", strings.Join(makeArgs, " "))
	}
	goArgs := strings.Join(append([]string{fmt.Sprintf("-bench.short=%v -bench.reps=%d", *benchShort, reps)}, extra...), " ")
	fmt.Fprintf(&b, "Command: `%s` — that is `go test -tags bench -run TestBench -count=1 -v ./services/testum/ -args %s`. "+
		"Measurement took %.0f s (setup and host-key pinning excluded).\n\n", makeCmd, goArgs, measured.Seconds())
	fmt.Fprintf(&b, "Peers: %s; %s; %s; %s.\n\n", toolVersion("pdsh", "-V"), toolVersion("parallel-ssh", "--version"),
		toolVersion("clush", "--version"), toolVersion("ansible", "--version"))
	fmt.Fprintf(&b, "Each figure is the median of %d run(s), the tools interleaved; parallelism = N for every tool; every tool's output "+
		"is checked for every host. testum is measured end to end through its API: POST /api/runs → every host final "+
		"(GET polled every 20 ms), then its per-host outputs are checked.\n\n", reps)

	// Targets.
	nT := 100
	fanMax, peerBeat := 0.0, true
	for _, c := range cmds {
		fanMax = max(fanMax, ratio(c.label, nT, "testum"))
		for _, p := range peers[2:] {
			if med(c.label, nT, p.name) <= med(c.label, nT, "testum") {
				peerBeat = false
			}
		}
	}
	fbRatio := median(fb).Seconds() / median(fbSSH).Seconds()
	perSessKiB := pr.perSession() / 1024
	yes := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	b.WriteString("## Targets (issue #7)\n\n| target | measured | |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| fan-out ≤ 1.15× the Go floor at N=100 | %.2f× (`echo ok`), %.2f× (1 KiB) | %s |\n",
		ratio("echo ok", nT, "testum"), ratio("1 KiB", nT, "testum"), yes(fanMax <= 1.15))
	fmt.Fprintf(&b, "| faster than every peer at N=100 | fastest peer %s | %s |\n", fastestPeer(peers[2:], func(p string) time.Duration {
		return med("echo ok", nT, p)
	}), yes(peerBeat))
	fmt.Fprintf(&b, "| repeat run faster than the floor | %.2f s vs %.2f s | %s |\n", median(repeat).Seconds(), median(repeatFloor).Seconds(),
		yes(median(repeat) < median(repeatFloor)))
	b.WriteString(st.targetRows(yes))
	fmt.Fprintf(&b, "| first byte ≤ 1.3× plain ssh | %.2f× (median %.0f ms vs %.0f ms) | %s |\n", fbRatio, ms(median(fb)), ms(median(fbSSH)),
		yes(fbRatio <= 1.3))
	fmt.Fprintf(&b, "| ≤ 100 KiB executor memory per session | %.0f KiB (%d sessions) | %s |\n\n", perSessKiB, pr.sessions, yes(perSessKiB <= 100))

	fmt.Fprintf(&b, "![seconds against N for every tool](%s)\n\n", filepath.Base(plotPath()))
	var panels []plotPanel
	for _, c := range cmds {
		fmt.Fprintf(&b, "## Fan-out: `%s`\n\n| tool |", c.label)
		for _, n := range sizes {
			fmt.Fprintf(&b, " N=%d s | ratio |", n)
		}
		b.WriteString("\n|---|")
		for range sizes {
			b.WriteString("---|---|")
		}
		b.WriteString("\n")
		pn := plotPanel{title: "fan-out: " + c.label}
		for _, p := range peers {
			fmt.Fprintf(&b, "| %s |", p.name)
			s := plotSeries{name: p.name, secs: map[int]time.Duration{}}
			for _, n := range sizes {
				fmt.Fprintf(&b, " %.2f | %.2f× |", med(c.label, n, p.name).Seconds(), ratio(c.label, n, p.name))
				s.secs[n] = med(c.label, n, p.name)
			}
			b.WriteString("\n")
			pn.series = append(pn.series, s)
		}
		b.WriteString("\n")
		panels = append(panels, pn)
	}
	fmt.Fprintf(&b, "Where testum's time goes, one more `echo ok` run on 100 hosts: %s.\n\n", timeline)
	fmt.Fprintf(&b, "## Repeat run\n\n`echo ok` on 100 hosts again right after a first run on the same hosts, %d time(s), each followed by the Go floor: "+
		"testum median %.2f s, Go floor %.2f s. This serve runs with the defaults: each host's SSH connection is kept for its next "+
		"command (`TESTUM_CONN_IDLE`, 60 s), so a repeat run skips the handshakes the floor pays every time. "+
		"(The fan-out tables above are measured with reuse off.)\n\n",
		reps, median(repeat).Seconds(), median(repeatFloor).Seconds())
	fmt.Fprintf(&b, "## First byte\n\n`echo hi` on one host, 50 runs: testum POST /api/runs → first stdout message on the WebSocket, median %.0f ms, "+
		"p95 %.0f ms; plain `ssh host echo hi` wall time (process start, handshake, command, exit), median %.0f ms, p95 %.0f ms "+
		"(ratio of medians %.2f×). Both open a new connection each time (testum with reuse off). "+
		"On a kept connection (the defaults, a run on the host moments before) testum's first byte is median %.0f ms, p95 %.0f ms.\n\n",
		ms(median(fb)), ms(p95(fb)), ms(median(fbSSH)), ms(p95(fbSSH)), fbRatio, ms(median(fbWarm)), ms(p95(fbWarm)))
	b.WriteString(st.markdown())
	fmt.Fprintf(&b, "## Executor memory\n\nA `testum executor` process (separate from its `testum gateway`, one NATS server, one PostgreSQL) "+
		"holds %d concurrent sessions (`sleep`, one per host; every host `running` in the API and every `sleep` present on the sshd "+
		"side after %.1f s). Its peak RSS (VmHWM, reset just before) was %.1f MiB over an idle RSS of %.1f MiB (after a warm-up run): "+
		"**%.0f KiB per session**. The run is then canceled and every remote `sleep` is checked gone.\n\n",
		pr.sessions, pr.ramp.Seconds(), float64(pr.peakHWM)/(1<<20), float64(pr.idleRSS)/(1<<20), perSessKiB)
	fmt.Fprintf(&b, "## Scale-out\n\n`echo ok` on %d hosts through the gateway API, %d time(s) each: one executor process, median %.2f s; "+
		"then a second executor process joins (same NATS, same PostgreSQL, both pulling from the one task consumer): median %.2f s, "+
		"%.2f× the time of one (hosts per executor in the last run: %s). On this 2-core machine sshd, the executors, the gateway, "+
		"NATS and PostgreSQL share the same two cores, so a second executor cannot add CPU: what it changes is coordination "+
		"(two consumers pulling, claims on the rows from two processes) and overlapping waits. The speed-up of a second machine is "+
		"not measured here.\n",
		pr.scaleN, reps, median(pr.one).Seconds(), median(pr.two).Seconds(), median(pr.two).Seconds()/median(pr.one).Seconds(),
		splitString(pr.split))

	if err := os.MkdirAll(filepath.Dir(*benchOut), 0o755); err != nil {
		t.Fatal(err)
	}
	if *benchFanout {
		if err := writePlot(plotPath(), sizes, panels); err != nil {
			t.Fatal(err)
		}
	}
	// The slot-bound scale-out section is TestBenchScaleout's: kept as it is.
	if kept := keptSection(*benchOut, scaleOutHeading); kept != "" {
		b.WriteString("\n" + kept)
	}
	// The soak (make soak) measures separately; its section is kept.
	if kept := keptSection(*benchOut, soakHeading); kept != "" {
		b.WriteString("\n" + kept)
	}
	b.WriteString(watched.markdown())
	if err := os.WriteFile(*benchOut, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + b.String())
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// plotPath is the PNG beside the report.
func plotPath() string { return filepath.Join(filepath.Dir(*benchOut), "benchmarks.png") }

func fastestPeer(peers []peer, secs func(string) time.Duration) string {
	best := peers[0].name
	for _, p := range peers[1:] {
		if secs(p.name) < secs(best) {
			best = p.name
		}
	}
	return fmt.Sprintf("%s %.2f s", best, secs(best).Seconds())
}

func splitString(m map[string]int) string {
	var parts []string
	for _, n := range m {
		parts = append(parts, strconv.Itoa(n))
	}
	slices.Sort(parts)
	return strings.Join(parts, " + ")
}

// loadAverage is the 1-minute load average.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

func quietness(before, after string) string {
	b, _ := strconv.ParseFloat(before, 64)
	a, _ := strconv.ParseFloat(after, 64)
	if max(a, b) > float64(runtime.NumCPU()) {
		return "the machine was shared with other work, so the figures are noisy"
	}
	return "the machine was quiet"
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return fmt.Sprintf("%.0f GiB", kb/(1<<20))
		}
	}
	return "?"
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "Linux"
	}
	return "Linux " + strings.TrimSpace(string(b))
}

// toolVersion is the first line a tool prints about its version.
func toolVersion(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return name + " (version unknown)"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(line)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func p95(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)*95+99)/100-1]
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func (e *benchEnv) sshOpts() []string {
	return []string{"-i", e.keyFile, "-p", strconv.Itoa(e.port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "LogLevel=ERROR"}
}

// floor dials and runs the command on every host at once with x/crypto/ssh:
// no queue, no database — the least any tool must spend.
func (e *benchEnv) floor(t *testing.T, hosts []string, cmd, want string) error {
	cfg := &ssh.ClientConfig{User: e.user, Auth: []ssh.AuthMethod{ssh.PublicKeys(e.sshd.KeyUser.Key)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 60 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan error, len(hosts))
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := ssh.Dial("tcp", net.JoinHostPort(h, strconv.Itoa(e.port)), cfg)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			s, err := c.NewSession()
			if err != nil {
				errs <- err
				return
			}
			out, err := s.Output(cmd)
			if err == nil && string(out) != want {
				err = fmt.Errorf("%s: output %q", h, out)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (e *benchEnv) testum(t *testing.T, hosts []string, cmd, want string) error {
	_, err := runOn(t, e.srv, e.ids[:len(hosts)], cmd, want)
	return err
}

// runOn runs cmd on the platforms ids through the gateway API of s, waits
// for the run to succeed and checks that every host answered want.
func runOn(t *testing.T, s *server, ids []int64, cmd, want string) (apiclient.Run, error) {
	var created apiclient.RunCreated
	mustCall(t, http.StatusCreated, "POST", s.URL+"/api/runs", map[string]any{"command": cmd, "parallelism": len(ids),
		"timeout": 120, "targets": map[string]any{"platform_ids": ids}}, &created)
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var r apiclient.Run
		mustCall(t, http.StatusOK, "GET", s.URL+"/api/runs/"+created.Id.String(), nil, &r)
		if r.State == "succeeded" {
			// Every host's output, from the archive summary.
			var sum struct {
				Groups []struct {
					Count  int    `json:"count"`
					Output string `json:"output"`
				} `json:"groups"`
			}
			mustCall(t, http.StatusOK, "GET", s.URL+"/api/runs/"+created.Id.String()+"/summary", nil, &sum)
			if len(sum.Groups) != 1 || sum.Groups[0].Count != len(ids) || sum.Groups[0].Output != want {
				return r, fmt.Errorf("testum outputs: %+v", sum.Groups)
			}
			return r, nil
		}
		if r.State != "queued" && r.State != "running" {
			return r, fmt.Errorf("testum run %s: %+v", r.State, r.Counts)
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("testum run still %s", r.State)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// checkLines verifies tool output "PREFIX host SEP line" per host.
func checkPerHost(out []byte, hosts []string, want string, parse func(line string) (host, text string, ok bool)) error {
	got := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if h, text, ok := parse(line); ok {
			got[h] += text + "\n"
		}
	}
	for _, h := range hosts {
		if got[h] != want {
			return fmt.Errorf("host %s answered %q", h, got[h])
		}
	}
	return nil
}

func runTool(name string, env []string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s: %v: %s", name, err, lastLines(errb.String(), 5))
	}
	return out.Bytes(), nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func (e *benchEnv) pdsh(t *testing.T, hosts []string, cmd, want string) error {
	out, err := runTool("pdsh", []string{"PDSH_SSH_ARGS=" + strings.Join(e.sshOpts(), " ") + " -l %u %h"},
		"-R", "ssh", "-f", strconv.Itoa(len(hosts)), "-l", e.user, "-w", strings.Join(hosts, ","), cmd)
	if err != nil {
		return err
	}
	return checkPerHost(out, hosts, want, func(line string) (string, string, bool) {
		h, text, ok := strings.Cut(line, ": ")
		return h, text, ok
	})
}

func (e *benchEnv) pssh(t *testing.T, hosts []string, cmd, want string) error {
	dir := t.TempDir()
	hf := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hf, []byte(strings.Join(hosts, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	args := []string{"-h", hf, "-p", strconv.Itoa(len(hosts)), "-l", e.user, "-t", "0", "-o", dir + "/out"}
	for _, o := range e.sshOpts() {
		args = append(args, "-x", o)
	}
	if _, err := runTool("parallel-ssh", nil, append(args, cmd)...); err != nil {
		return err
	}
	for _, h := range hosts {
		b, err := os.ReadFile(filepath.Join(dir, "out", h))
		if err != nil || string(b) != want {
			return fmt.Errorf("parallel-ssh: host %s answered %q (%v)", h, b, err)
		}
	}
	return nil
}

func (e *benchEnv) clush(t *testing.T, hosts []string, cmd, want string) error {
	out, err := runTool("clush", nil, "-f", strconv.Itoa(len(hosts)), "-l", e.user, "-o", strings.Join(e.sshOpts(), " "),
		"-w", strings.Join(hosts, ","), cmd)
	if err != nil {
		return err
	}
	return checkPerHost(out, hosts, want, func(line string) (string, string, bool) {
		h, text, ok := strings.Cut(line, ": ")
		return h, text, ok
	})
}

func (e *benchEnv) ansible(t *testing.T, hosts []string, cmd, want string) (err error) {
	dir := t.TempDir()
	var inv strings.Builder
	inv.WriteString("[all]\n")
	for _, h := range hosts {
		fmt.Fprintf(&inv, "%s ansible_port=%d ansible_user=%s ansible_ssh_private_key_file=%s\n", h, e.port, e.user, e.keyFile)
	}
	invf := filepath.Join(dir, "inv")
	if err := os.WriteFile(invf, []byte(inv.String()), 0o644); err != nil {
		return err
	}
	out, err := runTool("ansible", []string{"ANSIBLE_HOST_KEY_CHECKING=False",
		"ANSIBLE_SSH_ARGS=-o UserKnownHostsFile=/dev/null -o ControlMaster=no -o LogLevel=ERROR", "ANSIBLE_LOCAL_TEMP=" + dir, "ANSIBLE_HOME=" + dir},
		"all", "-i", invf, "-m", "raw", "-a", cmd, "-f", strconv.Itoa(len(hosts)), "--one-line")
	if err != nil {
		return err
	}
	// --one-line: "HOST | CHANGED | rc=0 | (stdout) TEXT\n…" with \n escaped as "\n".
	wantOne := strings.ReplaceAll(strings.TrimSuffix(want, "\n"), "\n", `\n`)
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w; ansible printed:\n%s", err, lastLines(string(out), 5))
		}
	}()
	return checkPerHost(out, hosts, want, func(line string) (string, string, bool) {
		h, rest, ok := strings.Cut(line, " | ")
		if !ok || !strings.Contains(rest, "rc=0") {
			return "", "", false
		}
		_, text, ok := strings.Cut(rest, "(stdout) ")
		text = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(text), `\r\n`), `\n`)
		text = strings.TrimSuffix(text, `\r`)
		if text == wantOne {
			return h, strings.TrimSuffix(want, "\n"), ok
		}
		return h, text, ok
	})
}

// firstByte measures POST → first output message, and plain ssh's wall time.
func (e *benchEnv) firstByte(t *testing.T, host string, n int) (testumDs, sshDs []time.Duration) {
	for range n {
		start := time.Now()
		if _, err := runTool("ssh", nil, append(e.sshOpts(), "-l", e.user, host, "echo hi")...); err != nil {
			t.Fatal(err)
		}
		sshDs = append(sshDs, time.Since(start))

		start = time.Now()
		runID := e.srv.startRun(t, map[string]any{"command": "echo hi", "targets": map[string]any{"platform_ids": []int64{e.ids[0]}}})
		msgs := e.srv.wsFirst(t, runID, "stdout")
		testumDs = append(testumDs, time.Since(start))
		if msgs != "hi\n" {
			t.Fatalf("first stdout %q", msgs)
		}
	}
	return testumDs, sshDs
}

// wsFirst returns the payload of the run's first message of type typ.
func (s *server) wsFirst(t *testing.T, id, typ string) string {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(s.wsURL(id, 0), http.Header{"Origin": {s.URL},
		"Authorization": {"Bearer " + tokenFor(s.URL)}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for range 1000 {
		_ = conn.SetReadDeadline(time.Now().Add(waitLimit))
		var m apiclient.WSMessage
		if err := conn.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		if string(m.Type) == typ {
			return m.Payload
		}
	}
	t.Fatal("no message")
	return ""
}

// runTimeline runs `echo ok` once on ids and splits its wall time into the
// phases the API records (PostgreSQL timestamps, same clock as ours).
// It also compares the CPU this process spends on it with the Go floor's
// on the same hosts; with profile set, the run is CPU-profiled there.
func (e *benchEnv) runTimeline(t *testing.T, hosts []string, profile string) string {
	s, ids := e.srv, e.ids[:len(hosts)]
	cpu0 := selfCPU()
	if err := e.floor(t, hosts, "echo ok", "ok\n"); err != nil {
		t.Fatal(err)
	}
	floorCPU := selfCPU() - cpu0
	var stop func()
	if profile != "" {
		stop = startCPUProfile(t, profile)
	}
	cpu0 = selfCPU()
	start := time.Now()
	r, err := runOn(t, s, ids, "echo ok", "ok\n")
	end := time.Now()
	testumCPU := selfCPU() - cpu0
	if stop != nil {
		stop()
	}
	if err != nil {
		t.Fatal(err)
	}
	if r.StartedAt == nil || r.FinishedAt == nil {
		return "(the run has no start or finish time)"
	}
	var first, last time.Time
	for _, h := range hostsOf(r) {
		if h.StartedAt != nil && (first.IsZero() || h.StartedAt.Before(first)) {
			first = *h.StartedAt
		}
		if h.FinishedAt != nil && h.FinishedAt.After(last) {
			last = *h.FinishedAt
		}
	}
	msf := func(a, b time.Time) float64 { return ms(b.Sub(a)) }
	return fmt.Sprintf("POST → run created %.0f ms; → run started by a coordinator %.0f ms; → first host started %.0f ms; "+
		"→ last host finished %.0f ms; → run finished %.0f ms; → seen final by the client (20 ms polling) and outputs read %.0f ms; "+
		"total %.0f ms. CPU in the test process: testum (serve with its embedded NATS) %.0f ms, the Go floor on the same hosts %.0f ms "+
		"(%.1f ms more per host; sshd and PostgreSQL run in other processes)", msf(start, r.CreatedAt), msf(r.CreatedAt, *r.StartedAt),
		msf(*r.StartedAt, first), msf(first, last), msf(last, *r.FinishedAt), msf(*r.FinishedAt, end), msf(start, end),
		ms(testumCPU), ms(floorCPU), ms(testumCPU-floorCPU)/float64(len(hosts)))
}
