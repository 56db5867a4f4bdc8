//go:build bench

package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/testenv"
)

// streamBytes is what the streaming benchmark asks one host to write.
const streamBytes = 200_000_000

// TestBenchStream is the streaming part of TestBench alone, for working on
// the relay: `go test -tags bench -run TestBenchStream -v ./services/testum
// -args -bench.reps=3 [-bench.profile=DIR]` logs the report's streaming
// section.
func TestBenchStream(t *testing.T) {
	reps := max(*benchReps, 1)
	sshd := testenv.StartSSHD(t)
	e := &benchEnv{sshd: sshd, user: sshd.KeyUser.Name, port: sshd.Port}
	e.keyFile = filepath.Join(t.TempDir(), "id")
	if err := os.WriteFile(e.keyFile, sshd.KeyUser.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	e.srv = startServe(t, map[string]string{"TESTUM_LOG_LEVEL": "error", "TESTUM_OUTPUT_CAP": "256MiB", "TESTUM_CONN_IDLE": "0"})
	host := sshd.Addr(0)
	id := e.srv.createPlatform(t, map[string]any{"name": "s0000", "host": host, "port": sshd.Port, "username": e.user,
		"auth_method": "private_key", "private_key": string(sshd.KeyUser.KeyPEM)})
	e.ids = []int64{id}
	if _, err := runOn(t, e.srv, e.ids, "echo ok", "ok\n"); err != nil { // pins the host key
		t.Fatal(err)
	}
	loadBefore := loadAverage()
	r := e.streaming(t, host, id, reps, *benchProfile)
	t.Logf("load average %s before, %s after\n%s%s", loadBefore, loadAverage(), r.targetRows(func(ok bool) string {
		return map[bool]string{true: "met", false: "missed"}[ok]
	}), r.markdown())
}

// streamResult is one streaming measurement: testum's WebSocket clients,
// one per mode, against plain ssh, same host, same command.
type streamResult struct {
	ssh    []time.Duration
	sshCPU []time.Duration // the ssh client's; sshd's share is the same for all
	json   streamMode      // the default JSON messages
	binary streamMode      // ?encoding=binary
}

// streamMode is the measurement of one WebSocket mode.
type streamMode struct {
	wall []time.Duration
	// cpu is the whole test process's: serve, NATS, the WebSocket client.
	cpu []time.Duration
	// hostSecs is the host's start → finish in testum: the executor read,
	// spooled and published everything (the WebSocket may lag behind).
	hostSecs  []time.Duration
	wireBytes int64 // WebSocket message bytes of the last run
	b64       bool  // some JSON payload arrived base64-encoded
	// resumes counts the dones that came before all the output: the client
	// had to reconnect with ?since= to get the rest.
	resumes int
}

// streamModes are the WebSocket modes measured, in the order they run.
var streamModes = []string{"json", "binary"}

// mode returns the measurement of name, one of streamModes.
func (r *streamResult) mode(name string) *streamMode {
	if name == "binary" {
		return &r.binary
	}
	return &r.json
}

// streaming runs `head -c 200000000 /dev/zero` on one host reps times,
// interleaved: through plain ssh writing to /dev/null, then through testum
// in each WebSocket mode (POST /api/runs, then a client counts stdout
// bytes until done). With profile set (a directory), testum's first run
// in each mode is CPU- and block-profiled there (the whole in-process
// serve and the WebSocket client).
func (e *benchEnv) streaming(t *testing.T, host string, id int64, reps int, profile string) streamResult {
	cmd := fmt.Sprintf("head -c %d /dev/zero", streamBytes)
	if profile != "" {
		if err := os.MkdirAll(profile, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var r streamResult
	for rep := range reps {
		d, cpu, err := e.sshToDevNull(host, cmd)
		if err != nil {
			t.Fatalf("ssh streaming: %v", err)
		}
		r.ssh, r.sshCPU = append(r.ssh, d), append(r.sshCPU, cpu)
		for _, name := range streamModes {
			e.streamOnce(t, id, cmd, name, r.mode(name), profile != "" && rep == 0, profile)
		}
	}
	return r
}

// streamOnce measures one testum run of cmd in WebSocket mode name into m.
func (e *benchEnv) streamOnce(t *testing.T, id int64, cmd, name string, m *streamMode, profiled bool, dir string) {
	var stop func()
	if profiled {
		stop = startCPUProfile(t, filepath.Join(dir, "streaming-"+name+".cpu.pprof"))
	}
	cpu0 := selfCPU()
	start := time.Now()
	runID := e.srv.startRun(t, map[string]any{"command": cmd, "timeout": 600,
		"targets": map[string]any{"platform_ids": []int64{id}}})
	got, err := e.srv.wsCountStdout(runID, name == "binary")
	elapsed, cpu := time.Since(start), selfCPU()-cpu0
	if stop != nil {
		stop()
	}
	if err != nil {
		t.Fatalf("testum streaming (%s): %v", name, err)
	}
	m.wall, m.cpu = append(m.wall, elapsed), append(m.cpu, cpu)
	m.wireBytes, m.b64 = got.wire, m.b64 || got.b64
	m.resumes += got.resumes
	// The run must end ok too (the archive, the exit status).
	run := e.srv.waitRun(t, runID)
	if run.State != "succeeded" {
		t.Fatalf("testum streaming run (%s) ended %s: %+v", name, run.State, run.Counts)
	}
	if h := (*run.Hosts)[0]; h.StartedAt != nil && h.FinishedAt != nil {
		m.hostSecs = append(m.hostSecs, h.FinishedAt.Sub(*h.StartedAt))
	}
}

// mbs is the throughput of streamBytes in d, in MB/s.
func mbs(d time.Duration) float64 { return float64(streamBytes) / d.Seconds() / 1e6 }

// ratio is the mode's median throughput over plain ssh's.
func (r streamResult) ratio(m streamMode) float64 {
	return median(r.ssh).Seconds() / median(m.wall).Seconds()
}

// targetRows are the streaming rows of the report's table of targets
// (columns: target, measured, met); yes words whether one was met.
func (r streamResult) targetRows(yes func(bool) string) string {
	ssh := mbs(median(r.ssh))
	row := func(label string, m streamMode, want float64) string {
		return fmt.Sprintf("| streaming %s ≥ %.0f%% of plain ssh | %.0f MB/s vs %.0f MB/s (%.0f%%) | %s |\n",
			label, 100*want, mbs(median(m.wall)), ssh, 100*r.ratio(m), yes(r.ratio(m) >= want))
	}
	return row("(JSON)", r.json, 0.5) + row("(binary frames)", r.binary, 0.7)
}

// markdown is the report's streaming section.
func (r streamResult) markdown() string {
	var b strings.Builder
	j, bin := r.json, r.binary
	enc := "as JSON text (NUL bytes are valid UTF-8; JSON escapes each as `\\u0000`)"
	if j.b64 {
		enc = "base64-encoded (the gateway's choice for output that JSON would escape more than base64 grows it)"
	}
	fmt.Fprintf(&b, "## Streaming\n\nOne host writes %d MB of NUL bytes (`head -c %d /dev/zero`), %d time(s), interleaved: "+
		"plain ssh, then testum in each WebSocket mode. Plain `ssh host 'head -c %d /dev/zero' > /dev/null`: median %.2f s, "+
		"**%.0f MB/s**, %.1f s of CPU in the ssh client. testum: POST /api/runs → a WebSocket client of `/ws/tasks/{run}` has "+
		"counted every stdout byte and seen `done`; CPU is the whole test process's (serve with its embedded NATS, and the "+
		"client), which shares the machine's cores with sshd.\n\n",
		streamBytes/1_000_000, streamBytes, len(r.ssh), streamBytes, median(r.ssh).Seconds(), mbs(median(r.ssh)), median(r.sshCPU).Seconds())
	b.WriteString("| mode | median s | MB/s | of plain ssh | CPU s | WebSocket MB (× output) | host start → finish s (MB/s) | early dones |\n" +
		"|---|---|---|---|---|---|---|---|\n")
	for _, row := range []struct {
		name string
		m    streamMode
	}{{"JSON (default)", j}, {"binary (`?encoding=binary`)", bin}} {
		m := row.m
		fmt.Fprintf(&b, "| %s | %.2f | **%.0f** | %.0f%% | %.1f | %.0f (%.2f×) | %.2f (%.0f) | %d |\n", row.name,
			median(m.wall).Seconds(), mbs(median(m.wall)), 100*r.ratio(m), median(m.cpu).Seconds(),
			float64(m.wireBytes)/1e6, float64(m.wireBytes)/streamBytes, median(m.hostSecs).Seconds(), mbs(median(m.hostSecs)), m.resumes)
	}
	fmt.Fprintf(&b, "\nIn JSON mode the payload arrived %s. In binary mode each stdout chunk is one binary frame: a 25-byte header, "+
		"then the raw bytes. The host's start → finish is when the executor had read, spooled and published to JetStream every "+
		"byte; the executor, the gateway, NATS and the client share this process. The JSON client takes each frame's payload "+
		"out of the message itself (base64 and `\\u0000` runs need no JSON unescaping) and decodes the rest with encoding/json, "+
		"as a client that cares for its CPU would; the binary client reads the header and counts the bytes after it.",
		enc)
	if n := j.resumes + bin.resumes; n > 0 {
		fmt.Fprintf(&b, " In %d run(s) the gateway sent `done` before the whole output; the client resumed with `?since=<last seq>` "+
			"and got the rest (the time includes that).", n)
	}
	b.WriteString("\n\n")
	return b.String()
}

// sshToDevNull runs cmd with the OpenSSH client, its stdout on /dev/null.
func (e *benchEnv) sshToDevNull(host, cmd string) (wall, cpu time.Duration, err error) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return 0, 0, err
	}
	defer null.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "ssh", append(e.sshOpts(), "-l", e.user, host, cmd)...)
	var stderr bytes.Buffer
	c.Stdout, c.Stderr = null, &stderr
	start := time.Now()
	if err := c.Run(); err != nil {
		return 0, 0, fmt.Errorf("ssh: %v: %s", err, stderr.Bytes())
	}
	return time.Since(start), c.ProcessState.UserTime() + c.ProcessState.SystemTime(), nil
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// wsCountStdout reads a run's WebSocket until done and counts the stdout
// bytes and the bytes of the messages themselves, in JSON mode or in binary
// mode. A done that comes before every byte is the gateway giving up
// early (see streamMode.resumes): the client then resumes after the last
// seq it saw, as the API allows, at most a few times.
func (s *server) wsCountStdout(id string, binaryMode bool) (c wsCount, err error) {
	c.binary = binaryMode
	for range 5 {
		if err := s.wsCountFrom(id, &c); err != nil {
			return c, err
		}
		if c.payload == streamBytes {
			return c, nil
		}
		c.resumes++
	}
	return c, fmt.Errorf("%d stdout bytes after %d resumes; messages by type %v; others: %q", c.payload, c.resumes, c.types, c.others)
}

// wsCount is what a WebSocket client received.
type wsCount struct {
	binary         bool // ?encoding=binary
	payload, wire  int64
	b64            bool
	last           uint64 // the seq of the last message: where a resume starts
	resumes        int    // early dones
	types          map[string]int
	others         []string
	msg, rest, raw []byte // buffers reused from message to message
}

// wsStreamDialer reads in large blocks: the default 4 KiB would cost the
// client a system call per few kilobytes of a 200 MB stream.
var wsStreamDialer = websocket.Dialer{ReadBufferSize: 256 << 10, HandshakeTimeout: waitLimit}

// wsCountFrom reads one connection, from after c.last, until done.
func (s *server) wsCountFrom(id string, c *wsCount) error {
	u, err := url.Parse(s.wsURL(id, c.last))
	if err != nil {
		return err
	}
	if c.binary {
		q := u.Query()
		q.Set("encoding", "binary")
		u.RawQuery = q.Encode()
	}
	conn, _, err := wsStreamDialer.Dial(u.String(), http.Header{"Origin": {s.URL}, "Authorization": {"Bearer " + tokenFor(s.URL)}})
	if err != nil {
		return fmt.Errorf("websocket: %w", err)
	}
	defer conn.Close()
	if c.types == nil {
		c.types = map[string]int{}
	}
	for msgs := 0; msgs < 1_000_000; msgs++ {
		_ = conn.SetReadDeadline(time.Now().Add(waitLimit))
		kind, r, err := conn.NextReader()
		if err != nil {
			return fmt.Errorf("websocket read after %d messages, %d bytes: %w", msgs, c.payload, err)
		}
		buf := bytes.NewBuffer(c.msg[:0])
		if _, err := buf.ReadFrom(r); err != nil {
			return fmt.Errorf("websocket read after %d messages, %d bytes: %w", msgs, c.payload, err)
		}
		data := buf.Bytes()
		c.msg = data
		c.wire += int64(len(data))
		if kind == websocket.BinaryMessage {
			if err := c.countBinary(data); err != nil {
				return fmt.Errorf("websocket message %d: %w", msgs, err)
			}
			continue
		}
		m, err := c.countJSON(data)
		if err != nil {
			return fmt.Errorf("websocket message %d: %w", msgs, err)
		}
		if m.Type == "done" {
			return nil
		}
	}
	return fmt.Errorf("no done after a million messages")
}

// countBinary counts a binary-mode frame: the header of openapi.yaml, then
// the raw output bytes.
func (c *wsCount) countBinary(data []byte) error {
	if !c.binary || len(data) < 25 {
		return fmt.Errorf("binary frame of %d bytes (binary mode %v)", len(data), c.binary)
	}
	c.last = binary.BigEndian.Uint64(data[9:])
	switch data[0] {
	case 1:
		c.types["stdout"]++
		c.payload += int64(len(data) - 25)
	case 2:
		c.types["stderr"]++
	default:
		return fmt.Errorf("binary frame of type %d", data[0])
	}
	return nil
}

// countJSON counts a JSON message. Its payload, when it needs no JSON
// unescaping (base64, plain text) or is nothing but \u0000 escapes, is cut
// out and counted here: encoding/json's scan of a 40 KiB string would cost
// this client more CPU than the relay (pprof). The rest of the message is
// decoded by encoding/json.
func (c *wsCount) countJSON(data []byte) (apiclient.WSMessage, error) {
	rest, payload, nuls, cut := cutPayload(data, c.rest)
	if cut {
		c.rest = rest
	}
	var m apiclient.WSMessage
	if err := json.Unmarshal(rest, &m); err != nil {
		return m, err
	}
	if cut {
		m.Payload = "" // counted from payload or nuls
	}
	c.last = m.Seq
	c.types[string(m.Type)]++
	if m.Type != "stdout" && len(c.others) < 20 {
		c.others = append(c.others, fmt.Sprintf("%s seq %d host_seq %d: %.200s", m.Type, m.Seq, val(m.HostSeq), m.Payload))
	}
	if m.Type != "stdout" {
		return m, nil
	}
	switch {
	case !cut:
		payload = []byte(m.Payload)
	case nuls > 0:
		c.payload += nuls
		return m, nil
	}
	if val(m.Encoding) != apiclient.Base64 {
		c.payload += int64(len(payload))
		return m, nil
	}
	c.b64 = true
	c.raw = slices.Grow(c.raw[:0], base64.StdEncoding.DecodedLen(len(payload)))
	n, err := base64.StdEncoding.Decode(c.raw[:cap(c.raw)], payload)
	if err != nil {
		return m, fmt.Errorf("base64 payload: %w", err)
	}
	c.payload += int64(n)
	return m, nil
}

// cutPayload returns into buf a message with its payload emptied, and the
// payload's bytes (within msg) when they hold no escape, or the number of
// NUL characters when they are nothing but \u0000 escapes; cut is false
// (and rest is msg) otherwise. In JSON an unescaped quote only ends a
// string, so the key is found unambiguously.
func cutPayload(msg, buf []byte) (rest, payload []byte, nuls int64, cut bool) {
	key := []byte(`"payload":"`)
	i := bytes.Index(msg, key)
	if i < 0 {
		return msg, nil, 0, false
	}
	start := i + len(key)
	end := bytes.IndexByte(msg[start:], '"')
	if end < 0 {
		return msg, nil, 0, false
	}
	payload = msg[start : start+end]
	if bytes.IndexByte(payload, '\\') >= 0 {
		if nuls = countNULs(payload); nuls == 0 {
			return msg, nil, 0, false
		}
		payload = nil
	}
	rest = append(append(buf[:0], msg[:start]...), msg[start+end:]...)
	return rest, payload, nuls, true
}

// countNULs is the number of NULs p holds when it is nothing but \u0000
// escapes, 0 otherwise.
func countNULs(p []byte) int64 {
	const nul = `\u0000`
	if len(p) == 0 || len(p)%len(nul) != 0 {
		return 0
	}
	for j := 0; j < len(p); j += len(nul) {
		if string(p[j:j+len(nul)]) != nul {
			return 0
		}
	}
	return int64(len(p) / len(nul))
}

// startCPUProfile profiles this process (the in-process serve included)
// into path until the returned func is called.
func startCPUProfile(t *testing.T, path string) func() {
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("cpu profile: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		t.Fatalf("cpu profile: %v", err)
	}
	// Where goroutines wait, too: a phase that is not CPU-bound is bound by
	// some wait. The block profile accumulates over the process's life, so
	// a base is written first: go tool pprof -diff_base BASE PROFILE.
	bpath := strings.TrimSuffix(path, ".cpu.pprof") + ".block.pprof"
	writeProfile("block", strings.TrimSuffix(bpath, ".pprof")+".base.pprof")
	runtime.SetBlockProfileRate(int(10 * time.Microsecond))
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			t.Errorf("cpu profile: %v", err)
		}
		runtime.SetBlockProfileRate(0)
		writeProfile("block", bpath)
		t.Logf("CPU and block profiles written to %s and %s (diff against its .base)", path, bpath)
	}
}

func writeProfile(name, path string) {
	if f, err := os.Create(path); err == nil {
		_ = pprof.Lookup(name).WriteTo(f, 0)
		_ = f.Close()
	}
}
