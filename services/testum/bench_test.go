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
	"encoding/json"
	"flag"
	"fmt"
	"io"
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

	"github.com/testum/testum/libs/api/apitest"
	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/testenv"
)

var (
	benchShort   = flag.Bool("bench.short", true, "N ≤ 100 only (about two minutes)")
	benchReps    = flag.Int("bench.reps", 0, "runs per figure, the median is reported (0: 1 in short mode; in full mode 3 at N ≤ 100, 1 above)")
	benchOut     = flag.String("bench.out", "../../docs/benchmarks.md", "where to write the results (the PNG goes beside it)")
	benchFanout  = flag.Bool("bench.fanout", true, "run the fan-out comparison (false: only the other parts, while developing them)")
	benchRest    = flag.Bool("bench.rest", true, "run the parts after the fan-out comparison (false: the fan-out comparison only, while developing it)")
	benchProfile = flag.String("bench.profile", "", "directory for pprof profiles of the fan-out and streaming runs (empty: none)")
	benchSizes   = flag.String("bench.sizes", "", "comma-separated host counts N of the fan-out comparison, e.g. 10,100,500 (empty: 10,100 in short mode, 10,100,500,1000 in full mode)")
	benchAnsible = flag.Int("bench.ansible-max", 0, "largest N ansible runs at (it forks a process per host: the slowest peer by far; 0: 10 in short mode, 1000 in full mode)")
)

// sizesOf parses -bench.sizes, or returns the default host counts.
func sizesOf(list string, short bool) ([]int, error) {
	if list == "" {
		if short {
			return []int{10, 100}, nil
		}
		return []int{10, 100, 500, 1000}, nil
	}
	var sizes []int
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-bench.sizes: %q is not a positive number of hosts", f)
		}
		sizes = append(sizes, n)
	}
	slices.Sort(sizes)
	return slices.Compact(sizes), nil
}

// repsAt is the number of interleaved runs at N = n: -bench.reps if set,
// else 1 in short mode; in full mode 3 at N ≤ 100 and 1 above, which keeps
// `make bench FULL=1` within 30 minutes.
func repsAt(n int) int {
	switch {
	case *benchReps > 0:
		return *benchReps
	case *benchShort || n > 100:
		return 1
	}
	return 3
}

// outcome is what one run of a peer did to its hosts.
type outcome struct {
	lost    int    // hosts whose output was missing or wrong, or that the tool reported failed
	why     string // the first lost host's reason, for the log
	retried int    // testum: hosts whose connection took more than one dial
}

// peer is one way to run a command on hosts. It returns an error only when
// the tool failed outright (it could not run, or no host answered); hosts
// it lost are counted in the outcome.
type peer struct {
	name string
	run  func(t *testing.T, hosts []string, cmd, want string) (outcome, error)
	at   func(n int) bool // the N it runs at (nil: every N)
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

// ansibleMax is the largest N ansible runs at: -bench.ansible-max, or by
// default 10 in short mode (a minute of ansible at N = 100 would be a third
// of the short run) and 1000 in full mode.
func ansibleMax() int {
	switch {
	case *benchAnsible > 0:
		return *benchAnsible
	case *benchShort:
		return 10
	}
	return 1000
}

func TestBench(t *testing.T) {
	benchStart := time.Now()
	var report string
	var reportAt time.Time
	writeReport(t, benchStart, &report, &reportAt, map[bool]time.Duration{true: 3 * time.Minute, false: 30 * time.Minute}[*benchShort])
	sizes, err := sizesOf(*benchSizes, *benchShort)
	if err != nil {
		t.Fatal(err)
	}
	memSessions, scaleN := 200, 100
	if !*benchShort {
		memSessions, scaleN = 1000, 500
	}
	reps := repsAt(100) // of the parts after the fan-out comparison
	firstByteRuns := 50
	if *benchShort {
		firstByteRuns = 30 // keeps make bench within 3 minutes
	}
	if *benchProfile != "" {
		if err := os.MkdirAll(*benchProfile, 0o755); err != nil {
			t.Fatal(err)
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
	// does. The repeat run uses a second serve with the defaults. The
	// metrics token lets the handshake window be sampled from /metrics.
	e.srv = startServe(t, map[string]string{"TESTUM_LOG_LEVEL": "error", "TESTUM_MAX_HANDSHAKES": "64",
		"TESTUM_EXECUTOR_SLOTS": "1024", "TESTUM_OUTPUT_CAP": "256MiB", "TESTUM_CONN_IDLE": "0",
		"TESTUM_METRICS_TOKEN": testMetricsToken, "TESTUM_SESSION_IDLE": benchSessionIdle})
	e.warm = startServe(t, map[string]string{"TESTUM_LOG_LEVEL": "error", "TESTUM_MAX_HANDSHAKES": "64",
		"TESTUM_EXECUTOR_SLOTS": "1024", "TESTUM_SESSION_IDLE": benchSessionIdle})
	hosts := make([]string, max(slices.Max(sizes), 100))
	for i := range hosts {
		hosts[i] = sshd.Addr(i)
		e.ids = append(e.ids, e.srv.createPlatform(t, map[string]any{"name": fmt.Sprintf("b%04d", i), "host": hosts[i],
			"port": sshd.Port, "username": e.user, "auth_method": "private_key", "private_key": string(sshd.KeyUser.KeyPEM)}))
	}
	for i := range 100 {
		e.warmIDs = append(e.warmIDs, e.warm.createPlatform(t, map[string]any{"name": fmt.Sprintf("w%04d", i), "host": hosts[i],
			"port": sshd.Port, "username": e.user, "auth_method": "private_key", "private_key": string(sshd.KeyUser.KeyPEM)}))
	}
	// First contact pins every host key (auto_add), outside the timings; a
	// host lost here is pinned by its next run.
	if o, err := e.testum(t, hosts, "echo ok", "ok\n"); err != nil {
		t.Fatal(err)
	} else if o.lost > 0 {
		t.Logf("pinning host keys: %d of %d hosts lost (%s)", o.lost, len(hosts), o.why)
	}
	// The separate processes need the binary: build it before measuring.
	testumBinary(t)
	measureStart := time.Now()

	peers := []peer{
		{name: "Go floor", run: e.floor},
		// The floor again at a parallelism of 100, where it loses no host:
		// what testum at parallelism N is held to above N = 100.
		{name: floor100, run: e.floorAt(100), at: func(n int) bool { return n > 100 }},
		{name: "testum", run: e.testum},
		{name: "pdsh", run: e.pdsh},
		{name: "parallel-ssh", run: e.pssh},
		{name: "clush", run: e.clush},
		{name: "ansible raw", run: e.ansible, at: func(n int) bool { return n <= ansibleMax() }},
	}
	kib := strings.Repeat("x", 1024) + "\n"
	type key struct {
		cmd  string
		n    int
		peer string
	}
	results := map[key][]time.Duration{}
	lost := map[key][]int{}
	failed := map[key]string{} // a tool that failed outright above N = 100: why
	retried := map[key]int{}   // testum's hosts whose connection took more than one dial, all runs
	var window windowRun       // the handshake window during testum's first `echo ok` run at the largest N
	cmds := []struct{ label, cmd, want string }{
		{"echo ok", "echo ok", "ok\n"},
		{"1 KiB", "head -c 1024 /dev/zero | tr '\\0' x; echo", kib},
	}
	nMax := slices.Max(sizes)
	for _, c := range cmds {
		for _, n := range sizes {
			for rep := range repsAt(n) * boolInt(*benchFanout) {
				for _, p := range peers { // interleaved: one run of each tool, then again
					if p.at != nil && !p.at(n) {
						continue
					}
					k := key{c.label, n, p.name}
					var sampler *windowSampler
					if p.name == "testum" && n == nMax && c.label == "echo ok" && rep == 0 {
						sampler = startWindowSampler(e.srv.URL, windowEvery)
					}
					start := time.Now()
					o, err := p.run(t, hosts[:n], c.cmd, c.want)
					d := time.Since(start)
					if sampler != nil {
						window = windowRun{n: n, wall: d, lost: o.lost, retried: o.retried}
						window.samples, window.err = sampler.stop()
					}
					switch {
					case err != nil && n <= 100:
						t.Fatalf("%s, %s on %d hosts (run %d): %v", p.name, c.label, n, rep+1, err)
					case err != nil:
						t.Logf("%s, %s on %d hosts (run %d) failed: %v", p.name, c.label, n, rep+1, err)
						failed[k], o.lost = lastLines(err.Error(), 1), n
					case o.lost > 0 && p.name == "testum" && n <= 100:
						t.Fatalf("testum, %s on %d hosts (run %d): %d hosts lost (%s)", c.label, n, rep+1, o.lost, o.why)
					case o.lost > 0:
						t.Logf("%s, %s on %d hosts (run %d): %d hosts lost (%s)", p.name, c.label, n, rep+1, o.lost, o.why)
					}
					if n > 100 {
						t.Logf("%s, %s on %d hosts (run %d): %.1f s, %d lost", p.name, c.label, n, rep+1, d.Seconds(), o.lost)
					}
					results[k] = append(results[k], d)
					lost[k] = append(lost[k], o.lost)
					retried[k] += o.retried
				}
			}
			t.Logf("%s on %d hosts: done (%.0f s into the measurement)", c.label, n, time.Since(measureStart).Seconds())
		}
	}
	fanoutDone := time.Since(measureStart)

	var (
		repeat, repeatFloor []time.Duration
		timeline            timelineResult
		fb, fbSSH, fbWarm   []time.Duration
		st                  streamResult
		pr                  procResult
		watched             watchResult
	)
	if *benchRest {
		// Repeat run: the same run again right after a first one, on a serve
		// that keeps connections (the default), against the floor (which opens
		// a new connection per host every time).
		if _, err := runOn(t, e.warm, e.warmIDs, "echo ok", "ok\n"); err != nil {
			t.Fatal(err)
		}
		for range reps {
			start := time.Now()
			if _, err := runOn(t, e.warm, e.warmIDs, "echo ok", "ok\n"); err != nil {
				t.Fatal(err)
			}
			repeat = append(repeat, time.Since(start))
			start = time.Now()
			if o, err := e.floor(t, hosts[:100], "echo ok", "ok\n"); err != nil || o.lost > 0 {
				t.Fatalf("Go floor on 100 hosts: %v, %d lost (%s)", err, o.lost, o.why)
			}
			repeatFloor = append(repeatFloor, time.Since(start))
		}
		t.Log("repeat run: done")
		var fanProfile string
		if *benchProfile != "" {
			fanProfile = filepath.Join(*benchProfile, "fanout.cpu.pprof")
		}
		timeline = e.runTimeline(t, hosts[:100], fanProfile)
		fb, fbSSH = e.firstByte(t, hosts[0], firstByteRuns)
		for range firstByteRuns { // the same on a kept connection
			start := time.Now()
			runID := e.warm.startRun(t, map[string]any{"command": "echo hi", "targets": map[string]any{"platform_ids": []int64{e.warmIDs[0]}}})
			if got := e.warm.wsFirst(t, runID, "stdout"); got != "hi\n" {
				t.Fatalf("first stdout %q", got)
			}
			fbWarm = append(fbWarm, time.Since(start))
			e.warm.waitRun(t, runID) // its connection is back in the pool
		}
		t.Log("first byte: done")
		st = e.streaming(t, hosts[0], e.ids[0], reps, *benchProfile)
		t.Log("streaming: done")
		pr = e.processes(t, memSessions, scaleN, repsAt(scaleN))
		t.Log("executor processes: done")
		// Watchers and API latency (bench_watch_test.go).
		watched = e.watch(t, watchHosts(), repsAt(watchHosts()))
		t.Log("watchers and API latency: done")
	}
	measured := time.Since(measureStart)
	loadAfter := loadAverage()

	// The report.
	med := func(label string, n int, p string) time.Duration { return median(results[key{label, n, p}]) }
	ratio := func(label string, n int, p string) float64 {
		return med(label, n, p).Seconds() / med(label, n, "Go floor").Seconds()
	}
	lostAt := func(label string, n int, p string) int {
		return slices.Max(append([]int{0}, lost[key{label, n, p}]...))
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
	if *benchSizes != "" {
		extra = append(extra, "-bench.sizes="+*benchSizes)
	}
	if *benchAnsible != 0 {
		extra = append(extra, fmt.Sprintf("-bench.ansible-max=%d", *benchAnsible))
	}
	if !*benchFanout {
		extra = append(extra, "-bench.fanout=false")
	}
	if !*benchRest {
		extra = append(extra, "-bench.rest=false")
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
	goArgs := strings.Join(append([]string{fmt.Sprintf("-bench.short=%v", *benchShort)}, makeArgs...), " ")
	fmt.Fprintf(&b, "Command: `%s` — that is `go test -tags bench -run TestBench -count=1 -v ./services/testum/ -args %s`. "+
		"TestBench took %s s (%s min: setup and teardown included; compiling and the test binary's start excluded), of which "+
		"the measurement %.0f s and the fan-out comparison %.0f s.\n\n", makeCmd, goArgs, wallSecsMark, wallMinMark,
		measured.Seconds(), fanoutDone.Seconds())
	fmt.Fprintf(&b, "Peers: %s; %s; %s; %s.\n\n", toolVersion("pdsh", "-V"), toolVersion("parallel-ssh", "--version"),
		toolVersion("clush", "--version"), toolVersion("ansible", "--version"))
	var repsText []string
	for _, n := range sizes {
		repsText = append(repsText, fmt.Sprintf("%d at N=%d", repsAt(n)*boolInt(*benchFanout), n))
	}
	fmt.Fprintf(&b, "Each fan-out figure is the median of several runs, the tools interleaved (runs: %s); the other parts' figures "+
		"are medians of %d run(s) (in full mode one run for the 500-host scale-out and the 1000-host watchers). Parallelism = N for every tool; every tool's output is checked for every host. testum is "+
		"measured end to end through its API: POST /api/runs → every host final (GET polled every 20 ms; the final answers "+
		"are checked against openapi.yaml, the polls in between are not, to keep the client's CPU out of the figures), then "+
		"its per-host outputs are checked.\n\n", strings.Join(repsText, ", "), reps)

	// Targets (issue #14).
	fbRatio := median(fb).Seconds() / median(fbSSH).Seconds()
	repeatRatio := median(repeat).Seconds() / median(repeatFloor).Seconds()
	perSessKiB := pr.perSession() / 1024
	yes := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	b.WriteString("## Targets (issue #14)\n\n| target | measured | |\n|---|---|---|\n")
	ran := func(n int) bool { return *benchFanout && slices.Contains(sizes, n) }
	for _, tg := range []struct {
		n     int
		limit float64
	}{{100, 1.10}, {500, 1.10}, {1000, 1.15}} {
		if !ran(tg.n) {
			continue
		}
		worst, lostN := 0.0, 0
		var parts []string
		for _, c := range cmds {
			worst = max(worst, ratio(c.label, tg.n, "testum"))
			lostN += lostAt(c.label, tg.n, "testum")
			parts = append(parts, fmt.Sprintf("%.2f× (`%s`)", ratio(c.label, tg.n, "testum"), c.label))
		}
		m := strings.Join(parts, ", ")
		if lostN > 0 {
			m += fmt.Sprintf("; testum lost %d host(s)", lostN)
		}
		fmt.Fprintf(&b, "| fan-out ≤ %.2f× the Go floor at N=%d | %s | %s |\n", tg.limit, tg.n, m, yes(worst <= tg.limit && lostN == 0))
	}
	if *benchRest {
		fmt.Fprintf(&b, "| testum's CPU ≤ 1.5 ms per host above the floor's | %.1f ms per host (%d hosts, `echo ok`; %.0f ms vs %.0f ms) | %s |\n",
			timeline.cpuPerHost, timeline.hosts, ms(timeline.testumCPU), ms(timeline.floorCPU), yes(timeline.cpuPerHost <= 1.5))
	}
	if ran(1000) {
		ok := true
		var parts []string
		for _, c := range cmds {
			tl, fl := lostAt(c.label, 1000, "testum"), lostAt(c.label, 1000, "Go floor")
			ok = ok && tl == 0 && med(c.label, 1000, "testum") <= med(c.label, 1000, floor100)
			parts = append(parts, fmt.Sprintf("`%s`: testum %.2f s, %d lost; floor at parallelism 100 %.2f s; floor at 1000 %.2f s, %d lost",
				c.label, med(c.label, 1000, "testum").Seconds(), tl, med(c.label, 1000, floor100).Seconds(),
				med(c.label, 1000, "Go floor").Seconds(), fl))
		}
		fmt.Fprintf(&b, "| N=1000 at parallelism 1000: every host ok, in no more time than the floor at parallelism 100 | %s | %s |\n",
			strings.Join(parts, "; "), yes(ok))
	}
	if *benchRest {
		b.WriteString(st.targetRows(yes))
		fmt.Fprintf(&b, "| repeat run on kept connections ≤ 0.3× the floor | %.2f× (%.2f s vs %.2f s, 100 hosts) | %s |\n",
			repeatRatio, median(repeat).Seconds(), median(repeatFloor).Seconds(), yes(repeatRatio <= 0.3))
		fmt.Fprintf(&b, "| first byte on a new connection ≤ 0.5× plain ssh | %.2f× (median %.0f ms vs %.0f ms) | %s |\n",
			fbRatio, ms(median(fb)), ms(median(fbSSH)), yes(fbRatio <= 0.5))
		memNote := ""
		if pr.sessions < 1000 {
			memNote = "; the target's 1000 sessions in `make bench FULL=1`"
		}
		fmt.Fprintf(&b, "| executor memory ≤ 64 KiB per concurrent session at 1000 sessions | %.0f KiB (%d sessions%s) | %s |\n",
			perSessKiB, pr.sessions, memNote, yes(perSessKiB <= 64))
	}
	if *benchShort {
		fmt.Fprintf(&b, "| `make bench` (short) ≤ 3 minutes | %s min (TestBench, setup and teardown included) | %s |\n", wallMinMark, wallMetMark)
	} else {
		fmt.Fprintf(&b, "| `make bench FULL=1` ≤ 30 minutes | %s min (TestBench, setup and teardown included) | %s |\n", wallMinMark, wallMetMark)
	}
	b.WriteString("\n")
	if *benchShort {
		b.WriteString("The fan-out targets at N = 500 and 1000 and the N = 1000 row are measured by `make bench FULL=1` only.\n\n")
	}

	if *benchFanout {
		fmt.Fprintf(&b, "![seconds against N for every tool](%s)\n\n", filepath.Base(plotPath()))
	}
	var panels []plotPanel
	for _, c := range cmds {
		if !*benchFanout {
			break
		}
		fmt.Fprintf(&b, "## Fan-out: `%s`\n\nSeconds (median), the ratio to the Go floor at parallelism N, and hosts lost "+
			"(output missing or wrong, or reported failed by the tool; the count of each run when they differ).\n\n| tool |", c.label)
		for _, n := range sizes {
			fmt.Fprintf(&b, " N=%d s | ratio | lost |", n)
		}
		b.WriteString("\n|---|")
		for range sizes {
			b.WriteString("---|---|---|")
		}
		b.WriteString("\n")
		pn := plotPanel{title: "fan-out: " + c.label}
		var notes []string
		for _, p := range peers {
			fmt.Fprintf(&b, "| %s |", p.name)
			s := plotSeries{name: p.name, secs: map[int]time.Duration{}}
			for _, n := range sizes {
				k := key{c.label, n, p.name}
				switch {
				case len(results[k]) == 0:
					b.WriteString(" — | | |")
				case failed[k] != "":
					fmt.Fprintf(&b, " failed | | %s |", lostCell(lost[k]))
					notes = append(notes, fmt.Sprintf("%s at N=%d failed: %s", p.name, n, failed[k]))
				default:
					fmt.Fprintf(&b, " %.2f | %.2f× | %s |", med(c.label, n, p.name).Seconds(), ratio(c.label, n, p.name), lostCell(lost[k]))
					s.secs[n] = med(c.label, n, p.name)
				}
				if retried[k] > 0 {
					notes = append(notes, fmt.Sprintf("%s at N=%d: %d host(s) took more than one dial (a handshake reset before "+
						"authentication, dialed again)", p.name, n, retried[k]))
				}
			}
			b.WriteString("\n")
			pn.series = append(pn.series, s)
		}
		b.WriteString("\n")
		if skipped := sizesAbove(sizes, ansibleMax()); len(skipped) > 0 {
			notes = append(notes, fmt.Sprintf("ansible raw is not run at N = %s (-bench.ansible-max=%d%s): it forks a process per "+
				"host and would take most of the time budget there", joinInts(skipped), ansibleMax(),
				map[bool]string{true: ", the short mode's default", false: ""}[*benchAnsible == 0 && *benchShort]))
		}
		for _, note := range notes {
			fmt.Fprintf(&b, "- %s.\n", note)
		}
		if len(notes) > 0 {
			b.WriteString("\n")
		}
		panels = append(panels, pn)
	}
	if *benchFanout {
		b.WriteString(window.markdown())
	}
	if *benchRest {
		fmt.Fprintf(&b, "Where testum's time goes, one more `echo ok` run on 100 hosts: %s.\n\n", timeline.text)
		fmt.Fprintf(&b, "## Repeat run\n\n`echo ok` on 100 hosts again right after a first run on the same hosts, %d time(s), each followed by the Go floor: "+
			"testum median %.2f s, Go floor %.2f s. This serve runs with the defaults: each host's SSH connection is kept for its next "+
			"command (`TESTUM_CONN_IDLE`, 60 s), so a repeat run skips the handshakes the floor pays every time. "+
			"(The fan-out tables above are measured with reuse off.)\n\n",
			reps, median(repeat).Seconds(), median(repeatFloor).Seconds())
		fmt.Fprintf(&b, "## First byte\n\n`echo hi` on one host, %d runs: testum POST /api/runs → first stdout message on the WebSocket, median %.0f ms, "+
			"p95 %.0f ms; plain `ssh host echo hi` wall time (process start, handshake, command, exit), median %.0f ms, p95 %.0f ms "+
			"(ratio of medians %.2f×). Both open a new connection each time (testum with reuse off). "+
			"On a kept connection (the defaults, a run on the host moments before) testum's first byte is median %.0f ms, p95 %.0f ms.\n\n",
			len(fb), ms(median(fb)), ms(p95(fb)), ms(median(fbSSH)), ms(p95(fbSSH)), fbRatio, ms(median(fbWarm)), ms(p95(fbWarm)))
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
			pr.scaleN, len(pr.one), median(pr.one).Seconds(), median(pr.two).Seconds(), median(pr.two).Seconds()/median(pr.one).Seconds(),
			splitString(pr.split))
	}

	if err := os.MkdirAll(filepath.Dir(*benchOut), 0o755); err != nil {
		t.Fatal(err)
	}
	if *benchFanout {
		if err := writePlot(plotPath(), sizes, panels, window.plot()); err != nil {
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
	if *benchRest {
		b.WriteString(watched.markdown())
	}
	report = b.String() // written by the cleanup registered first, which runs last
	reportAt = time.Now()
}

// The marks in the report that its writing replaces with TestBench's wall
// time, known only once every cleanup (servers, processes, databases) ran.
const (
	wallSecsMark = "{wall s}"
	wallMinMark  = "{wall min}"
	wallMetMark  = "{wall met}"
)

// writeReport writes report to -bench.out once every other cleanup of
// TestBench has run (it is the first registered), with TestBench's wall
// time since start filled in; nothing when the test failed.
func writeReport(t *testing.T, start time.Time, report *string, reportAt *time.Time, limit time.Duration) {
	t.Cleanup(func() {
		if t.Failed() || *report == "" {
			return
		}
		wall := time.Since(start)
		met := "met"
		if wall > limit {
			met = "**missed**"
		}
		out := strings.NewReplacer(wallSecsMark, fmt.Sprintf("%.0f", wall.Seconds()), wallMinMark, fmt.Sprintf("%.1f", wall.Minutes()),
			wallMetMark, met).Replace(*report)
		if err := os.WriteFile(*benchOut, []byte(out), 0o644); err != nil {
			t.Error(err)
			return
		}
		t.Logf("teardown took %.0f s\n%s", time.Since(*reportAt).Seconds(), out)
	})
}

// benchSessionIdle keeps the admin sessions of the bench's serves: the
// warm serve is not asked anything during the fan-out comparison, which
// lasts longer than the default idle limit in full mode.
const benchSessionIdle = "4h"

// floor100 names the Go floor at a parallelism of 100.
const floor100 = "Go floor, parallelism 100"

// lostCell is the lost-hosts cell of one tool at one N: the count, or each
// run's when they differ.
func lostCell(runs []int) string {
	if len(runs) == 0 {
		return ""
	}
	if slices.Min(runs) == slices.Max(runs) {
		return strconv.Itoa(runs[0])
	}
	return joinInts(runs)
}

func joinInts(ns []int) string {
	var s []string
	for _, n := range ns {
		s = append(s, strconv.Itoa(n))
	}
	return strings.Join(s, ", ")
}

// sizesAbove are the sizes greater than n.
func sizesAbove(sizes []int, n int) []int {
	var above []int
	for _, s := range sizes {
		if s > n {
			above = append(above, s)
		}
	}
	return above
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// plotPath is the PNG beside the report.
func plotPath() string { return filepath.Join(filepath.Dir(*benchOut), "benchmarks.png") }

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
	if len(ds) == 0 {
		return 0
	}
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
func (e *benchEnv) floor(t *testing.T, hosts []string, cmd, want string) (outcome, error) {
	return e.floorAt(len(hosts))(t, hosts, cmd, want)
}

// floorAt is the floor with at most par hosts at a time.
func (e *benchEnv) floorAt(par int) func(t *testing.T, hosts []string, cmd, want string) (outcome, error) {
	return func(t *testing.T, hosts []string, cmd, want string) (outcome, error) {
		cfg := &ssh.ClientConfig{User: e.user, Auth: []ssh.AuthMethod{ssh.PublicKeys(e.sshd.KeyUser.Key)},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 60 * time.Second}
		var wg sync.WaitGroup
		errs := make(chan error, len(hosts))
		slots := make(chan struct{}, par)
		for _, h := range hosts {
			wg.Add(1)
			slots <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				errs <- floorOne(h, e.port, cfg, cmd, want)
			}()
		}
		wg.Wait()
		close(errs)
		var o outcome
		for err := range errs {
			if err != nil {
				o.lost++
				if o.why == "" {
					o.why = err.Error()
				}
			}
		}
		if o.lost == len(hosts) {
			return o, fmt.Errorf("Go floor: every host lost: %s", o.why)
		}
		return o, nil
	}
}

// floorOne runs cmd on one host over a connection of its own.
func floorOne(h string, port int, cfg *ssh.ClientConfig, cmd, want string) error {
	c, err := ssh.Dial("tcp", net.JoinHostPort(h, strconv.Itoa(port)), cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return err
	}
	out, err := s.Output(cmd)
	if err == nil && string(out) != want {
		err = fmt.Errorf("%s: output %q", h, out)
	}
	return err
}

func (e *benchEnv) testum(t *testing.T, hosts []string, cmd, want string) (outcome, error) {
	_, o, err := runLost(t, e.srv, e.ids[:len(hosts)], cmd, want)
	return o, err
}

// runOn runs cmd on the platforms ids through the gateway API of s, waits
// for the run to succeed and checks that every host answered want.
func runOn(t *testing.T, s *server, ids []int64, cmd, want string) (apiclient.Run, error) {
	r, o, err := runLost(t, s, ids, cmd, want)
	if err == nil && o.lost > 0 {
		err = fmt.Errorf("testum run %s: %d of %d hosts lost (%s): %+v", r.State, o.lost, len(ids), o.why, val(r.Counts))
	}
	return r, err
}

// benchHTTP makes the polls of runLost: unlike the tests' client, it does
// not validate every answer against openapi.yaml (which compiles the
// response's JSON schema on every call, seconds of CPU in a run of 500
// hosts polled every 20 ms, in the process being measured); the answers
// runLost acts on are validated.
var benchHTTP = &http.Client{Timeout: waitLimit}

// runLost runs cmd on the platforms ids through the gateway API of s and
// waits until the run is final. It counts the hosts lost: not ok, or whose
// output is not want. The error says the run could not be followed.
func runLost(t *testing.T, s *server, ids []int64, cmd, want string) (apiclient.Run, outcome, error) {
	var created apiclient.RunCreated
	mustCall(t, http.StatusCreated, "POST", s.URL+"/api/runs", map[string]any{"command": cmd, "parallelism": len(ids),
		"timeout": 120, "targets": map[string]any{"platform_ids": ids}}, &created)
	runURL := s.URL + "/api/runs/" + created.Id.String()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var r apiclient.Run
		req, body, err := benchGet(s, runURL, &r)
		if err != nil {
			return r, outcome{}, err
		}
		if r.State != "queued" && r.State != "running" {
			if msg := apitest.Check(req, http.StatusOK, http.Header{"Content-Type": {"application/json"}}, body); msg != "" {
				t.Error(msg)
			}
			return r, lostOf(t, s, r, len(ids), want), nil
		}
		if time.Now().After(deadline) {
			return r, outcome{}, fmt.Errorf("testum run still %s after 10 minutes", r.State)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// benchGet GETs u from s with its token and decodes the 200 answer into out.
func benchGet(s *server, u string, out any) (*http.Request, []byte, error) {
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tokenFor(s.URL))
	resp, err := benchHTTP.Do(req)
	if err != nil {
		return req, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return req, body, err
	}
	if resp.StatusCode != http.StatusOK {
		return req, body, fmt.Errorf("GET %s: %d %.300s", u, resp.StatusCode, body)
	}
	return req, body, json.Unmarshal(body, out)
}

// lostOf counts the hosts of the final run r that did not end ok with the
// output want (from the archive summary).
func lostOf(t *testing.T, s *server, r apiclient.Run, n int, want string) outcome {
	var sum struct {
		Groups []struct {
			Count  int    `json:"count"`
			Output string `json:"output"`
		} `json:"groups"`
	}
	mustCall(t, http.StatusOK, "GET", s.URL+"/api/runs/"+r.Id.String()+"/summary", nil, &sum)
	right := 0
	var other []string
	for _, g := range sum.Groups {
		if g.Output == want {
			right += g.Count
		} else if len(other) < 3 {
			other = append(other, fmt.Sprintf("%d× %.80q", g.Count, g.Output))
		}
	}
	var o outcome
	ok := val(r.Counts)["ok"]
	o.lost = n - min(ok, right)
	if o.lost > 0 {
		o.why = fmt.Sprintf("run %s, hosts %v, other outputs %s", r.State, val(r.Counts), strings.Join(other, ", "))
		for _, h := range hostsOf(r) {
			if h.State != "ok" && h.Error != nil {
				o.why += fmt.Sprintf("; %s %s: %s", h.Name, h.State, *h.Error)
				break
			}
		}
	}
	for _, h := range hostsOf(r) {
		if val(h.ConnectAttempts) > 1 {
			o.retried++
		}
	}
	return o
}

// checkPerHost counts the hosts whose lines in a tool's output (parsed by
// parse into host and text) do not make want.
func checkPerHost(out []byte, hosts []string, want string, parse func(line string) (host, text string, ok bool)) outcome {
	got := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if h, text, ok := parse(line); ok {
			got[h] += text + "\n"
		}
	}
	var o outcome
	for _, h := range hosts {
		if got[h] != want {
			o.lost++
			if o.why == "" {
				o.why = fmt.Sprintf("host %s answered %.80q", h, got[h])
			}
		}
	}
	return o
}

// toolOutcome is the outcome of a tool whose run ended with runErr (its
// exit status, which is not 0 when some host failed): an error only when
// no host answered right.
func toolOutcome(name string, o outcome, n int, runErr error) (outcome, error) {
	if o.lost == n {
		if runErr != nil {
			return o, runErr
		}
		return o, fmt.Errorf("%s: no host answered right (%s)", name, o.why)
	}
	if runErr != nil && o.lost > 0 {
		o.why += "; " + lastLines(runErr.Error(), 1)
	}
	return o, nil
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

func (e *benchEnv) pdsh(t *testing.T, hosts []string, cmd, want string) (outcome, error) {
	out, err := runTool("pdsh", []string{"PDSH_SSH_ARGS=" + strings.Join(e.sshOpts(), " ") + " -l %u %h"},
		"-R", "ssh", "-f", strconv.Itoa(len(hosts)), "-l", e.user, "-w", strings.Join(hosts, ","), cmd)
	o := checkPerHost(out, hosts, want, func(line string) (string, string, bool) {
		h, text, ok := strings.Cut(line, ": ")
		return h, text, ok
	})
	return toolOutcome("pdsh", o, len(hosts), err)
}

func (e *benchEnv) pssh(t *testing.T, hosts []string, cmd, want string) (outcome, error) {
	dir := t.TempDir()
	hf := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hf, []byte(strings.Join(hosts, "\n")+"\n"), 0o644); err != nil {
		return outcome{}, err
	}
	args := []string{"-h", hf, "-p", strconv.Itoa(len(hosts)), "-l", e.user, "-t", "0", "-o", dir + "/out"}
	for _, o := range e.sshOpts() {
		args = append(args, "-x", o)
	}
	_, runErr := runTool("parallel-ssh", nil, append(args, cmd)...)
	var o outcome
	for _, h := range hosts {
		b, err := os.ReadFile(filepath.Join(dir, "out", h))
		if err != nil || string(b) != want {
			o.lost++
			if o.why == "" {
				o.why = fmt.Sprintf("host %s answered %.80q (%v)", h, b, err)
			}
		}
	}
	return toolOutcome("parallel-ssh", o, len(hosts), runErr)
}

func (e *benchEnv) clush(t *testing.T, hosts []string, cmd, want string) (outcome, error) {
	out, err := runTool("clush", nil, "-f", strconv.Itoa(len(hosts)), "-l", e.user, "-o", strings.Join(e.sshOpts(), " "),
		"-w", strings.Join(hosts, ","), cmd)
	o := checkPerHost(out, hosts, want, func(line string) (string, string, bool) {
		h, text, ok := strings.Cut(line, ": ")
		return h, text, ok
	})
	return toolOutcome("clush", o, len(hosts), err)
}

func (e *benchEnv) ansible(t *testing.T, hosts []string, cmd, want string) (outcome, error) {
	dir := t.TempDir()
	var inv strings.Builder
	inv.WriteString("[all]\n")
	for _, h := range hosts {
		fmt.Fprintf(&inv, "%s ansible_port=%d ansible_user=%s ansible_ssh_private_key_file=%s\n", h, e.port, e.user, e.keyFile)
	}
	invf := filepath.Join(dir, "inv")
	if err := os.WriteFile(invf, []byte(inv.String()), 0o644); err != nil {
		return outcome{}, err
	}
	out, err := runTool("ansible", []string{"ANSIBLE_HOST_KEY_CHECKING=False",
		"ANSIBLE_SSH_ARGS=-o UserKnownHostsFile=/dev/null -o ControlMaster=no -o LogLevel=ERROR", "ANSIBLE_LOCAL_TEMP=" + dir, "ANSIBLE_HOME=" + dir},
		"all", "-i", invf, "-m", "raw", "-a", cmd, "-f", strconv.Itoa(len(hosts)), "--one-line")
	// --one-line: "HOST | CHANGED | rc=0 | (stdout) TEXT\n…" with \n escaped as "\n".
	wantOne := strings.ReplaceAll(strings.TrimSuffix(want, "\n"), "\n", `\n`)
	o := checkPerHost(out, hosts, want, func(line string) (string, string, bool) {
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
	if o.lost > 0 {
		o.why += "; ansible printed: " + lastLines(string(out), 2)
	}
	return toolOutcome("ansible", o, len(hosts), err)
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

// timelineResult is what runTimeline measured.
type timelineResult struct {
	text                string // the phases, for the report
	hosts               int
	testumCPU, floorCPU time.Duration
	cpuPerHost          float64 // ms of CPU per host testum spent above the floor
}

// runTimeline runs `echo ok` once on ids and splits its wall time into the
// phases the API records (PostgreSQL timestamps, same clock as ours).
// It also compares the CPU this process spends on it with the Go floor's
// on the same hosts; with profile set, the run is CPU-profiled there.
func (e *benchEnv) runTimeline(t *testing.T, hosts []string, profile string) timelineResult {
	s, ids := e.srv, e.ids[:len(hosts)]
	cpu0 := selfCPU()
	if o, err := e.floor(t, hosts, "echo ok", "ok\n"); err != nil || o.lost > 0 {
		t.Fatalf("Go floor on %d hosts: %v, %d lost (%s)", len(hosts), err, o.lost, o.why)
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
	tl := timelineResult{hosts: len(hosts), testumCPU: testumCPU, floorCPU: floorCPU,
		cpuPerHost: ms(testumCPU-floorCPU) / float64(len(hosts))}
	if r.StartedAt == nil || r.FinishedAt == nil {
		tl.text = "(the run has no start or finish time)"
		return tl
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
	tl.text = fmt.Sprintf("POST → run created %.0f ms; → run started by a coordinator %.0f ms; → first host started %.0f ms; "+
		"→ last host finished %.0f ms; → run finished %.0f ms; → seen final by the client (20 ms polling) and outputs read %.0f ms; "+
		"total %.0f ms. CPU in the test process: testum (serve with its embedded NATS) %.0f ms, the Go floor on the same hosts %.0f ms "+
		"(%.1f ms more per host; sshd and PostgreSQL run in other processes)", msf(start, r.CreatedAt), msf(r.CreatedAt, *r.StartedAt),
		msf(*r.StartedAt, first), msf(first, last), msf(last, *r.FinishedAt), msf(*r.FinishedAt, end), msf(start, end),
		ms(testumCPU), ms(floorCPU), tl.cpuPerHost)
	return tl
}
