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

	"github.com/testum/testum/libs/api"
	"github.com/testum/testum/libs/testenv"
)

var (
	benchShort = flag.Bool("bench.short", true, "N ≤ 100 only (about two minutes)")
	benchReps  = flag.Int("bench.reps", 3, "runs per figure (the median is reported)")
	benchOut   = flag.String("bench.out", "../../docs/benchmarks.md", "where to write the results")
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
	srv     *server
	ids     []int64 // platform ids, host i at ids[i]
}

func TestBench(t *testing.T) {
	sizes := []int{10, 100}
	if !*benchShort {
		sizes = append(sizes, 500, 1000)
	}
	maxN := slices.Max(sizes)
	sshd := testenv.StartSSHD(t)
	e := &benchEnv{sshd: sshd, user: sshd.KeyUser.Name, port: sshd.Port}
	e.keyFile = filepath.Join(t.TempDir(), "id")
	if err := os.WriteFile(e.keyFile, sshd.KeyUser.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	e.srv = startServe(t, map[string]string{"TESTUM_LOG_LEVEL": "error", "TESTUM_MAX_HANDSHAKES": "64", "TESTUM_EXECUTOR_SLOTS": "1024"})
	hosts := make([]string, maxN)
	for i := range maxN {
		hosts[i] = sshd.Addr(i)
		e.ids = append(e.ids, e.srv.createPlatform(t, map[string]any{"name": fmt.Sprintf("b%04d", i), "host": hosts[i],
			"port": sshd.Port, "username": e.user, "auth_method": "private_key", "private_key": string(sshd.KeyUser.KeyPEM)}))
	}
	// First contact pins every host key (auto_add), outside the timings.
	e.testum(t, hosts, "echo ok", "ok\n")

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
		{"true", "echo ok", "ok\n"},
		{"1 KiB", "head -c 1024 /dev/zero | tr '\\0' x; echo", kib},
	}
	for _, c := range cmds {
		for _, n := range sizes {
			for rep := range *benchReps {
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
	// Repeat run: the same testum run again within a minute.
	var repeat []time.Duration
	for range *benchReps {
		start := time.Now()
		if err := e.testum(t, hosts[:100], "echo ok", "ok\n"); err != nil {
			t.Fatal(err)
		}
		repeat = append(repeat, time.Since(start))
	}
	fb, fbSSH := e.firstByte(t, hosts[0], 50)

	var b strings.Builder
	cpu := cpuModel()
	fmt.Fprintf(&b, "# Benchmarks\n\nMeasured %s on %d cores (%s), Debian, one OpenSSH sshd serving 127.0.x.y as hosts, key authentication.\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), cpu)
	fmt.Fprintf(&b, "Command: `make bench` (`go test -tags bench -run TestBench ./services/testum/ -args -bench.short=%v -bench.reps=%d`).\n",
		*benchShort, *benchReps)
	fmt.Fprintf(&b, "Each figure is the median of %d runs, the tools interleaved; parallelism = N for every tool.\n", *benchReps)
	fmt.Fprintf(&b, "testum is measured end to end through its API: POST /api/runs → every host final (GET polled every 20 ms).\n\n")
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
		for _, p := range peers {
			fmt.Fprintf(&b, "| %s |", p.name)
			for _, n := range sizes {
				m := median(results[key{c.label, n, p.name}])
				floor := median(results[key{c.label, n, "Go floor"}])
				fmt.Fprintf(&b, " %.2f | %.2f× |", m.Seconds(), m.Seconds()/floor.Seconds())
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "## Repeat run\n\ntestum, `echo ok` on 100 hosts again right after: median %.2f s (Go floor above: %.2f s). "+
		"testum opens a new connection per host and run; there is no connection reuse yet.\n\n",
		median(repeat).Seconds(), median(results[key{"true", 100, "Go floor"}]).Seconds())
	fmt.Fprintf(&b, "## First byte\n\n`echo hi` on one host, 50 runs: testum POST → first output message on the WebSocket median %.0f ms, p95 %.0f ms; "+
		"plain `ssh host echo hi` wall time median %.0f ms, p95 %.0f ms (ratio %.2f×).\n\n",
		ms(median(fb)), ms(p95(fb)), ms(median(fbSSH)), ms(p95(fbSSH)), median(fb).Seconds()/median(fbSSH).Seconds())
	b.WriteString("## Not measured yet\n\nStreaming throughput (200 MB over the WebSocket against plain ssh), executor memory per session " +
		"with 1000 concurrent sessions, and one vs two executor processes: see the issue note.\n")
	if err := os.MkdirAll(filepath.Dir(*benchOut), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(*benchOut, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + b.String())
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
	ids := e.ids[:len(hosts)]
	var created api.RunCreated
	mustCall(t, http.StatusCreated, "POST", e.srv.URL+"/api/runs", map[string]any{"command": cmd, "parallelism": len(hosts),
		"timeout": 120, "targets": map[string]any{"platform_ids": ids}}, &created)
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var r api.Run
		mustCall(t, http.StatusOK, "GET", e.srv.URL+"/api/runs/"+created.ID, nil, &r)
		if r.State == "succeeded" {
			// Every host's output, from the archive summary.
			var sum struct {
				Groups []struct {
					Count  int    `json:"count"`
					Output string `json:"output"`
				} `json:"groups"`
			}
			mustCall(t, http.StatusOK, "GET", e.srv.URL+"/api/runs/"+created.ID+"/summary", nil, &sum)
			if len(sum.Groups) != 1 || sum.Groups[0].Count != len(hosts) || sum.Groups[0].Output != want {
				return fmt.Errorf("testum outputs: %+v", sum.Groups)
			}
			return nil
		}
		if r.State != "queued" && r.State != "running" {
			return fmt.Errorf("testum run %s: %+v", r.State, r.Counts)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testum run still %s", r.State)
		}
		time.Sleep(20 * time.Millisecond)
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
		var m api.WSMessage
		if err := conn.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		if m.Type == typ {
			return m.Payload
		}
	}
	t.Fatal("no message")
	return ""
}
