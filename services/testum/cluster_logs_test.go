package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/logstore"
)

// logRequestLimit bounds the log requests of one servesEveryLog: answers
// that do not come within it are a hang, reported as such.
const logRequestLimit = 2 * time.Minute

// TestClusterLogsServedByEveryGateway: a split-role run on the deployment
// (two gateways, two executors, logs in the JetStream object store of the
// 3-node cluster), a multi-MiB host log among small ones. Either gateway
// serves every host's log raw, with ?format=text and in the run's tar.gz,
// right after the run, after both executors that wrote them are killed,
// and after the node leading the log bucket is killed too.
func TestClusterLogsServedByEveryGateway(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 2, 2, map[string]string{"TESTUM_EXECUTOR_SLOTS": "2"})
	js := d.JetStream(t)
	bucketStream := "OBJ_" + logstore.DefaultNATSBucket
	if s, err := js.Stream(t.Context(), bucketStream); err != nil {
		t.Fatalf("log bucket: %v", err)
	} else if r := s.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("log bucket has %d replicas, want 3", r)
	}

	m := newMarkers(t, d.SSHD)
	const base = 930
	ids := d.Fleet(t, "lg", 6, base)
	bigIP := d.SSHD.Addr(base)
	// seq 1 600000 prints about 4.1 MiB: some 33 chunks of the object store.
	id := d.Gateways[0].startRun(t, map[string]any{
		"command": m.Ran() + "; " + m.Gate() + `; if [ "` + hostIP + `" = "` + bigIP + `" ]; then seq 1 600000; else echo "small ` + hostIP + `"; fi`,
		"targets": map[string]any{"platform_ids": ids}, "timeout": 120,
	})
	m.WaitStarted(t, 3) // more than one executor's 2 slots: both executors write logs
	m.Open(t)
	run := d.Gateways[1].waitRun(t, id)
	if run.State != "succeeded" {
		t.Fatalf("run %s: %+v", run.State, hostsOf(run))
	}
	big, err := exec.Command("seq", "1", "600000").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]string{} // host index → its log
	execs := map[string]bool{}
	for _, h := range hostsOf(run) {
		ip, _, _ := strings.Cut(h.Address, ":")
		if h.State != "ok" || m.Count(ip) != 1 {
			t.Errorf("%s: %s, ran %d times", h.Name, h.State, m.Count(ip))
		}
		execs[val(h.Executor)] = true
		want[h.Idx] = "small " + ip + "\n"
		if ip == bigIP {
			want[h.Idx] = string(big)
		}
	}
	if len(want) != len(ids) || len(execs) != 2 {
		t.Fatalf("%d hosts on executors %v, want %d hosts on both", len(want), execs, len(ids))
	}
	names := map[int]string{}
	for _, h := range hostsOf(run) {
		names[h.Idx] = h.Name
	}

	everyGateway := func(when string) {
		t.Helper()
		for i, gw := range d.Gateways {
			start := time.Now()
			if err := servesEveryLog(t, gw.server, run.Id, want, names); err != nil {
				t.Fatalf("%s: gateway %d: %v", when, i, err)
			}
			t.Logf("%s: gateway %d served every log in %s", when, i, time.Since(start).Round(100*time.Millisecond))
		}
	}
	everyGateway("after the run")

	for _, e := range d.Executors {
		e.proc.Kill(t)
	}
	everyGateway("with both executors killed")

	// The node leading the bucket goes too: the other two elect a leader
	// and the gateways on the killed node reconnect. A request may fail
	// meanwhile (never hang); each gateway serves every log again.
	leader := d.NATS.StreamLeader(t, bucketStream)
	killed := time.Now()
	d.NATS.Kill(t, leader)
	for i, gw := range d.Gateways {
		var last error
		failures := 0
		start := time.Now()
		deadline := start.Add(waitLimit)
		for {
			if last = servesEveryLog(t, gw.server, run.Id, want, names); last == nil {
				break
			}
			failures++
			if time.Now().After(deadline) {
				t.Fatalf("gateway %d serves not every log %s after the log bucket's leader %s was killed (%d failed tries): %v",
					i, waitLimit, d.NATS.Nodes[leader].Name, failures, last)
			}
			time.Sleep(200 * time.Millisecond) // polling the gateway
		}
		t.Logf("log bucket's leader killed: gateway %d served every log in %s (%d failed tries before), %s after the kill; recovery bound %s",
			i, time.Since(start).Round(100*time.Millisecond), failures, time.Since(killed).Round(100*time.Millisecond), d.Bound(t))
	}
	if now := d.NATS.StreamLeader(t, bucketStream); now == leader {
		t.Errorf("the log bucket is still led by the killed node %d", leader)
	}
}

// servesEveryLog checks that gw serves each host log of the run (want:
// host index → bytes) raw, with ?format=text, and in the run's tar.gz with
// every host, and no error entry; it returns what was wrong.
func servesEveryLog(t *testing.T, gw *server, id apiclient.RunIDParam, want map[int]string, names map[int]string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), logRequestLimit)
	defer cancel()
	text := apiclient.Text
	for idx, w := range want {
		raw, err := gw.api.RunHostLogWithResponse(ctx, id, idx, nil)
		if err := answered("host log "+names[idx], err, func() (int, []byte) { return raw.StatusCode(), raw.Body }); err != nil {
			return err
		}
		if string(raw.Body) != w {
			return fmt.Errorf("host log %s: %d bytes, want %d (%.40q)", names[idx], len(raw.Body), len(w), raw.Body)
		}
		tl, err := gw.api.RunHostLogWithResponse(ctx, id, idx, &apiclient.RunHostLogParams{Format: &text})
		if err := answered("text log "+names[idx], err, func() (int, []byte) { return tl.StatusCode(), tl.Body }); err != nil {
			return err
		}
		if err := sameTextLog(string(tl.Body), w); err != nil {
			return fmt.Errorf("text log %s: %w", names[idx], err)
		}
	}
	tgz, err := gw.api.RunLogsWithResponse(ctx, id)
	if err := answered("logs archive", err, func() (int, []byte) { return tgz.StatusCode(), tgz.Body }); err != nil {
		return err
	}
	entries, err := tarEntries(tgz.Body)
	if err != nil {
		return fmt.Errorf("logs archive: %w", err)
	}
	if len(entries) != len(want) {
		return fmt.Errorf("logs archive has %d entries, want %d: %v", len(entries), len(want), keysOf(entries))
	}
	for idx, w := range want {
		name := fmt.Sprintf("%03d-%s.log", idx, safeName(names[idx]))
		got, ok := entries[name]
		if !ok {
			return fmt.Errorf("logs archive has no %s: %v", name, keysOf(entries))
		}
		if got != w {
			return fmt.Errorf("logs archive %s: %d bytes, want %d", name, len(got), len(w))
		}
	}
	return nil
}

// answered is nil when a call succeeded with 200, else what it answered;
// resp is read only when the call succeeded.
func answered(what string, err error, resp func() (int, []byte)) error {
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s: no answer within %s: %w", what, logRequestLimit, err)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	if status, body := resp(); status != http.StatusOK {
		return fmt.Errorf("%s: status %d %.200s", what, status, body)
	}
	return nil
}

// sameTextLog checks that text is the timestamped rendering of raw: every
// line prefixed by a time and stdout, the output in order. A piece that
// did not end a line ends one in the rendering, so the output is compared
// without its line ends.
func sameTextLog(text, raw string) error {
	var out strings.Builder
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	for i, line := range lines {
		head, output, found := strings.Cut(line, " | ")
		at, stream, _ := strings.Cut(head, " ")
		if _, err := time.Parse(time.RFC3339Nano, at); !found || err != nil || stream != "stdout" {
			return fmt.Errorf("line %d %.80q is not `TIME stdout | output`", i+1, line)
		}
		out.WriteString(output)
	}
	if got, w := out.String(), strings.ReplaceAll(raw, "\n", ""); got != w {
		return fmt.Errorf("output of %d lines is %d bytes without line ends, want %d", len(lines), len(got), len(w))
	}
	if n := strings.Count(raw, "\n"); len(lines) < n {
		return fmt.Errorf("%d lines, want at least %d", len(lines), n)
	}
	return nil
}

// tarEntries reads a tar.gz into entry name → content.
func tarEntries(tgz []byte) (map[string]string, error) {
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		out[h.Name] = string(b)
	}
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// safeName is the gateway's file name of a host in the logs archive.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}
