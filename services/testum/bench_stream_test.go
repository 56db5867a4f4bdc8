//go:build bench

package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	apiclient "github.com/testum/testum/libs/api/client"
)

// streamBytes is what the streaming benchmark asks one host to write.
const streamBytes = 200_000_000

// streamResult is one streaming measurement: testum's WebSocket client
// against plain ssh, same host, same command.
type streamResult struct {
	testum, ssh []time.Duration
	// CPU time: the whole test process (serve, NATS, WebSocket client) for
	// testum, the ssh client for ssh; sshd's share is the same for both.
	testumCPU, sshCPU []time.Duration
	// hostSecs is the host's start → finish in testum: the executor read,
	// spooled and published everything (the WebSocket may lag behind).
	hostSecs   []time.Duration
	wireBytes  int64 // WebSocket message bytes of the last testum run
	payloadB64 bool  // some payload arrived base64-encoded
	// resumes counts the dones that came before all the output: the client
	// had to reconnect with ?since= to get the rest.
	resumes int
}

// streaming runs `head -c 200000000 /dev/zero` on one host reps times,
// interleaved: through testum (POST /api/runs, then a WebSocket client
// counts stdout payload bytes until done) and through plain ssh writing to
// /dev/null. With profile set, testum's first run is CPU-profiled there
// (the whole in-process serve and the WebSocket client).
func (e *benchEnv) streaming(t *testing.T, host string, id int64, reps int, profile string) streamResult {
	cmd := fmt.Sprintf("head -c %d /dev/zero", streamBytes)
	var r streamResult
	for rep := range reps {
		d, cpu, err := e.sshToDevNull(host, cmd)
		if err != nil {
			t.Fatalf("ssh streaming: %v", err)
		}
		r.ssh, r.sshCPU = append(r.ssh, d), append(r.sshCPU, cpu)

		var stop func()
		if profile != "" && rep == 0 {
			stop = startCPUProfile(t, profile)
		}
		cpu0 := selfCPU()
		start := time.Now()
		runID := e.srv.startRun(t, map[string]any{"command": cmd, "timeout": 600,
			"targets": map[string]any{"platform_ids": []int64{id}}})
		got, err := e.srv.wsCountStdout(runID)
		elapsed, cpu := time.Since(start), selfCPU()-cpu0
		if stop != nil {
			stop()
		}
		if err != nil {
			t.Fatalf("testum streaming: %v", err)
		}
		r.testum, r.testumCPU = append(r.testum, elapsed), append(r.testumCPU, cpu)
		r.wireBytes, r.payloadB64 = got.wire, r.payloadB64 || got.b64
		r.resumes += got.resumes
		// The run must end ok too (the archive, the exit status).
		run := e.srv.waitRun(t, runID)
		if run.State != "succeeded" {
			t.Fatalf("testum streaming run ended %s: %+v", run.State, run.Counts)
		}
		if h := (*run.Hosts)[0]; h.StartedAt != nil && h.FinishedAt != nil {
			r.hostSecs = append(r.hostSecs, h.FinishedAt.Sub(*h.StartedAt))
		}
	}
	return r
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

// wsCountStdout reads a run's WebSocket until done and counts the decoded
// stdout payload bytes and the bytes of the messages themselves. A done
// that comes before every byte is the gateway giving up early (see
// streamResult.resumes): the client then resumes after the last seq it
// saw, as the API allows, at most a few times.
func (s *server) wsCountStdout(id string) (c wsCount, err error) {
	var since uint64
	for range 5 {
		done, err := s.wsCountFrom(id, since, &c)
		if err != nil {
			return c, err
		}
		if c.payload == streamBytes {
			return c, nil
		}
		c.resumes++
		since = done.Seq
	}
	return c, fmt.Errorf("%d stdout bytes after %d resumes; messages by type %v; others: %q", c.payload, c.resumes, c.types, c.others)
}

// wsCount is what a WebSocket client received.
type wsCount struct {
	payload, wire int64
	b64           bool
	resumes       int // early dones
	types         map[string]int
	others        []string
}

func (s *server) wsCountFrom(id string, since uint64, c *wsCount) (apiclient.WSMessage, error) {
	conn, _, err := websocket.DefaultDialer.Dial(s.wsURL(id, since), http.Header{"Origin": {s.URL},
		"Authorization": {"Bearer " + tokenFor(s.URL)}})
	if err != nil {
		return apiclient.WSMessage{}, fmt.Errorf("websocket: %w", err)
	}
	defer conn.Close()
	if c.types == nil {
		c.types = map[string]int{}
	}
	for msgs := 0; msgs < 1_000_000; msgs++ {
		_ = conn.SetReadDeadline(time.Now().Add(waitLimit))
		_, data, err := conn.ReadMessage()
		if err != nil {
			return apiclient.WSMessage{}, fmt.Errorf("websocket read after %d messages, %d bytes: %w", msgs, c.payload, err)
		}
		c.wire += int64(len(data))
		// NULs arrive as 6-byte \u0000 escapes: counting them here is
		// exact and cheap, where encoding/json's decoding of them would cost
		// this client more CPU than the whole relay (pprof). Any other
		// payload is decoded by encoding/json.
		rest, nuls := cutNULPayload(data)
		var m apiclient.WSMessage
		if err := json.Unmarshal(rest, &m); err != nil {
			return m, fmt.Errorf("websocket message %d: %w", msgs, err)
		}
		c.payload += nuls
		c.types[string(m.Type)]++
		if m.Type != "stdout" && len(c.others) < 20 {
			c.others = append(c.others, fmt.Sprintf("%s seq %d host_seq %d: %.200s", m.Type, m.Seq, val(m.HostSeq), m.Payload))
		}
		switch m.Type {
		case "stdout":
			if val(m.Encoding) == apiclient.Base64 {
				c.b64 = true
				raw, err := base64.StdEncoding.DecodeString(m.Payload)
				if err != nil {
					return m, fmt.Errorf("base64 payload: %w", err)
				}
				c.payload += int64(len(raw))
			} else {
				c.payload += int64(len(m.Payload))
			}
		case "done":
			return m, nil
		}
	}
	return apiclient.WSMessage{}, fmt.Errorf("no done after a million messages")
}

// cutNULPayload returns a message with its payload emptied and the number
// of NUL characters that payload held, when it is nothing but \u0000
// escapes; otherwise the message unchanged and 0. In JSON an unescaped
// quote only ends a string, so the key is found unambiguously.
func cutNULPayload(msg []byte) ([]byte, int64) {
	key := []byte(`"payload":"`)
	i := bytes.Index(msg, key)
	if i < 0 {
		return msg, 0
	}
	start := i + len(key)
	end := bytes.IndexByte(msg[start:], '"')
	if end < 0 {
		return msg, 0
	}
	p := msg[start : start+end]
	if len(p) == 0 || len(p)%6 != 0 {
		return msg, 0
	}
	nul := []byte(`\u0000`)
	for j := 0; j < len(p); j += 6 {
		if !bytes.Equal(p[j:j+6], nul) {
			return msg, 0
		}
	}
	rest := make([]byte, 0, len(msg)-len(p))
	rest = append(append(rest, msg[:start]...), msg[start+end:]...)
	return rest, int64(len(p) / 6)
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
