//go:build bench

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/testum/testum/libs/testenv"
)

// The slot-bound scale-out workload: every host sleeps, so a run's time is
// set by how many sessions the executors may hold at once, not by CPU, and
// each executor process's slots show as capacity even on a small machine.
const (
	scaleSlots = 64
	scaleSleep = 2 * time.Second
)

// scaleOutHeading starts the section this workload owns in the report;
// TestBench keeps it when it rewrites the rest of the file.
const scaleOutHeading = "## Scale-out: slot-bound"

var scaleOutExecutors = []int{1, 2, 4}

type scaleRow struct {
	executors int
	measured  time.Duration
	noSleep   time.Duration // the same run with no sleep: handshakes and coordination
	ok        bool
	split     map[string]int // hosts per executor
	err       error
}

// scaleHosts is how many hosts the workload runs on: 512, or 256 in short
// mode, where the rounds take half the time (one executor sleeps in 4 waves
// instead of 8, four executors in one wave instead of two).
func scaleHosts() int {
	if *benchShort {
		return 256
	}
	return 512
}

func (r scaleRow) ideal() time.Duration {
	return time.Duration(float64(scaleHosts()) / float64(r.executors*scaleSlots) * float64(scaleSleep))
}

// TestBenchScaleout runs `sleep 2` on 512 (short mode: 256) loopback hosts through one
// `testum gateway` process with 1, then 2, then 4 `testum executor`
// processes of 64 slots each (executors join between the rounds), and
// writes its section of the report.
func TestBenchScaleout(t *testing.T) {
	reps := *benchReps
	if reps <= 0 {
		reps = 1
		if !*benchShort {
			reps = 3
		}
	}
	loadBefore := loadAverage()
	sshd := testenv.StartSSHD(t)
	env := splitRolesEnv(t, fmt.Sprint(scaleSlots))
	gw := startProcess(t, env, "gateway")
	s := &server{URL: gw.waitURL(t)}
	s.login(t)
	var executors []*process
	addExecutors := func(n int) {
		for len(executors) < n {
			p := startProcess(t, env, "executor")
			p.waitExecutorID(t)
			executors = append(executors, p)
		}
	}
	addExecutors(1)

	ids := make([]int64, scaleHosts())
	for i := range ids {
		ids[i] = s.createPlatform(t, map[string]any{"name": fmt.Sprintf("s%04d", i), "host": sshd.Addr(i),
			"port": sshd.Port, "username": sshd.KeyUser.Name, "auth_method": "private_key",
			"private_key": string(sshd.KeyUser.KeyPEM)})
	}
	// First contact pins the host keys, outside the timings.
	if _, err := runOn(t, s, ids, "echo ok", "ok\n"); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	measureStart := time.Now()
	cmd := fmt.Sprintf("sleep %d && echo ok", int(scaleSleep.Seconds()))
	var rows []scaleRow
	for _, n := range scaleOutExecutors {
		addExecutors(n)
		var times, noSleep []time.Duration
		row := scaleRow{executors: n, ok: true}
		for range reps {
			start := time.Now()
			if _, err := runOn(t, s, ids, "echo ok", "ok\n"); err != nil {
				row.ok, row.err = false, err
			}
			noSleep = append(noSleep, time.Since(start))
			start = time.Now()
			run, err := runOn(t, s, ids, cmd, "ok\n")
			times = append(times, time.Since(start))
			if err != nil {
				row.ok, row.err = false, err
			}
			row.split = map[string]int{}
			for _, h := range hostsOf(run) {
				row.split[val(h.Executor)]++
			}
		}
		row.measured, row.noSleep = median(times), median(noSleep)
		rows = append(rows, row)
		t.Logf("%d executor(s): %.2f s (ideal %.2f s, no sleep %.2f s), ok %v %v", n, row.measured.Seconds(), row.ideal().Seconds(),
			row.noSleep.Seconds(), row.ok, row.err)
	}
	measured := time.Since(measureStart)
	loadAfter := loadAverage()

	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", scaleOutHeading)
	fmt.Fprintf(&b, "Measured %s UTC on %d cores; load average (1 min) %s before, %s after: %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04"), runtime.NumCPU(), loadBefore, loadAfter, quietness(loadBefore, loadAfter))
	makeCmd := map[bool]string{true: "make bench BENCH=scaleout", false: "make bench BENCH=scaleout FULL=1"}[*benchShort]
	fmt.Fprintf(&b, "Command: `%s` — that is `go test -tags bench -run TestBenchScaleout -count=1 -v ./services/testum/ "+
		"-args -bench.short=%v -bench.reps=%d` (also part of every `make bench`). Measurement took %.0f s (setup and host-key pinning excluded).\n\n",
		makeCmd, *benchShort, reps, measured.Seconds())
	fmt.Fprintf(&b, "`%s` on %d hosts (127.0.x.y on one sshd) through one `testum gateway` process, at parallelism %d, with 1, 2 and 4 "+
		"`testum executor` processes of `TESTUM_EXECUTOR_SLOTS=%d` each (the executors join between rounds; same NATS, same PostgreSQL). "+
		"Measured: POST /api/runs → the run final (GET polled every 20 ms) and every host's output checked, median of %d run(s). "+
		"Ideal: hosts ÷ total slots × %.0f s. The hosts only sleep, so past the CPU every run spends anyway the time is bound by "+
		"slots: each executor's slots are capacity it adds even on this machine. That CPU part is measured just before each run: "+
		"the same run of `echo ok` on the same hosts and executors (no sleep), column *no-sleep s*. Connection reuse is off "+
		"(`TESTUM_CONN_IDLE=0`), so both runs open a new SSH connection per host whichever executor takes it.\n\n",
		cmd, scaleHosts(), scaleHosts(), scaleSlots, reps, scaleSleep.Seconds())
	b.WriteString("| executors | total slots | ideal s | measured s | measured/ideal | all hosts ok | no-sleep s | hosts per executor |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %d | %.2f | %.2f | %.2f× | %s | %.2f | %s |\n", r.executors, r.executors*scaleSlots, r.ideal().Seconds(),
			r.measured.Seconds(), r.measured.Seconds()/r.ideal().Seconds(), map[bool]string{true: "y", false: "n"}[r.ok],
			r.noSleep.Seconds(), splitString(r.split))
	}
	b.WriteString("\n")
	if err := writeSection(*benchOut, scaleOutHeading, b.String()); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + b.String())
	for _, r := range rows {
		if r.err != nil {
			t.Errorf("%d executor(s): %v", r.executors, r.err)
		}
	}
}

// writeSection replaces, in the report at path, the section that starts
// with heading (up to the next "## " heading or the end) with body, or
// appends body when the report has no such section.
func writeSection(path, heading, body string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	before, after := splitSection(string(old), heading)
	if after == "" {
		body = strings.TrimRight(body, "\n") + "\n"
	}
	if before != "" && !strings.HasSuffix(before, "\n\n") {
		before = strings.TrimRight(before, "\n") + "\n\n"
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(before+body+after), 0o644)
}

// splitSection returns doc without the section starting at heading: the
// text before it and the text after it.
func splitSection(doc, heading string) (before, after string) {
	i := strings.Index(doc, heading+"\n")
	if i < 0 {
		return doc, ""
	}
	rest := doc[i+len(heading)+1:]
	if j := strings.Index(rest, "\n## "); j >= 0 {
		return doc[:i], rest[j+1:]
	}
	return doc[:i], ""
}

// keptSection is the section at heading of the report at path, to carry
// over when the report is rewritten.
func keptSection(path, heading string) string {
	doc, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	before, after := splitSection(string(doc), heading)
	return strings.TrimSuffix(strings.TrimPrefix(string(doc), before), after)
}
