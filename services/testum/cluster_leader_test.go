package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/bus"
)

// leaderLines is how many numbered lines each host of the leader test
// prints, a little apart, so that a host's output is several messages.
const leaderLines = 12

// leaderOutput is what a host at ip prints in the leader test.
func leaderOutput(ip string) string {
	var b strings.Builder
	for i := 1; i <= leaderLines; i++ {
		fmt.Fprintf(&b, "%s line %02d of %d\n", ip, i, leaderLines)
	}
	return b.String()
}

// TestStreamLeadersKilledDuringARun: a 200-host run on the deployment while
// the nats-server leading TESTUM_TASKS, then the one leading TESTUM_OUTPUT,
// then the one leading TESTUM_RUNS is killed with SIGKILL, each while hosts
// stream their output, and restarted (the streams current again) before the
// next: every host ends ok, ran once, and its output is complete and in
// order over the WebSocket and in its log. The hosts go in three waves that
// the test lets through one after the other (markers.Admit), so that each
// kill has hosts printing and hosts still to come.
func TestStreamLeadersKilledDuringARun(t *testing.T) {
	t.Parallel()
	const hosts = 200
	d := startDeployment(t, 2, 2, nil)
	m := newMarkers(t, d.SSHD)
	t.Cleanup(func() { m.Admit(t, hosts) }) // a failed test must not leave commands waiting
	ids := d.Fleet(t, "lk", hosts, 1200)

	kills := []struct {
		stream string
		admit  int // hosts let through before the kill
	}{{bus.StreamTasks, 60}, {bus.StreamOutput, 120}, {bus.StreamRuns, 170}}
	m.Admit(t, kills[0].admit)
	cmd := fmt.Sprintf(`%s; ip=%s; %s; for i in $(seq -w 1 %d); do echo "$ip line $i of %d"; sleep 0.03; done`,
		m.Ran(), hostIP, m.WaitAdmitted(), leaderLines, leaderLines)
	start := time.Now()
	id := d.Gateways[0].startRun(t, map[string]any{"command": cmd,
		"targets": map[string]any{"platform_ids": ids}, "timeout": 300, "parallelism": 80})

	var lines atomic.Int64 // stdout messages the follower got
	f := &follower{t: t, id: id, next: func(drops int) *server { return d.Gateways[drops%2].server },
		OnMsg: func(_ int, msg apiclient.WSMessage) {
			if msg.Type == "stdout" {
				lines.Add(1)
			}
		}}
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		f.Follow()
	}()

	for _, k := range kills {
		m.Admit(t, k.admit)
		waitLines(t, &lines, lines.Load()+20) // the wave's output is flowing
		leader := d.NATS.StreamLeader(t, k.stream)
		started, streamed := m.Started(), lines.Load()
		killed := time.Now()
		d.NATS.Kill(t, leader)
		next := waitNewStreamLeader(t, d, k.stream, leader)
		t.Logf("killed %s (leader of %s) with %d hosts started, %d stdout messages streamed; %s leads it after %s",
			d.NATS.Nodes[leader].Name, k.stream, started, streamed, d.NATS.Nodes[next].Name,
			time.Since(killed).Round(time.Millisecond))
		d.NATS.Restart(t, leader)
		d.NATS.WaitJetStream(t)
		waitWorkStreamsCurrent(t, d)
	}
	m.Admit(t, hosts)

	select {
	case <-followed:
	case <-time.After(5 * time.Minute): // a hang guard only
		t.Fatalf("websocket of run %s not done after 5 minutes (%d messages)", id, lines.Load())
	}
	r := d.Gateways[1].waitRun(t, id)
	t.Logf("run of %d hosts with 3 leader kills: %s to the last message (%d websocket drops); recovery bound %s",
		hosts, time.Since(start).Round(time.Millisecond), f.Drops, d.Bound(t))
	if r.State != "succeeded" {
		t.Errorf("run %s: %s, want succeeded: %+v", id, r.State, val(r.Counts))
	}
	if n := len(hostsOf(r)); n != hosts {
		t.Fatalf("run has %d hosts, want %d", n, hosts)
	}

	// Over the WebSocket: each host's output whole and in order, its own
	// sequence without a gap, all of one attempt, ending with exit 0 and
	// ok; the run's done last.
	if n := len(f.Msgs); n == 0 || f.Msgs[n-1].Type != "done" || val(f.Msgs[n-1].State) != "succeeded" {
		t.Errorf("websocket of run %s does not end with done succeeded", id)
	}
	stdout := hostOutput(f.Msgs, "stdout")
	hostSeqs := map[string][]int{}
	byHost := map[string][]apiclient.WSMessage{}
	for _, msg := range f.Msgs {
		if msg.Host != nil {
			byHost[*msg.Host] = append(byHost[*msg.Host], msg)
		}
		if msg.Host == nil || msg.Attempt == nil {
			continue // the run's done, or about a host no attempt runs
		}
		hostSeqs[*msg.Host] = append(hostSeqs[*msg.Host], val(msg.HostSeq))
		if *msg.Attempt != 1 {
			t.Errorf("%s: a message of attempt %d", *msg.Host, *msg.Attempt)
		}
	}
	ctx := context.Background()
	for i, h := range hostsOf(r) {
		ip, _, _ := strings.Cut(h.Address, ":")
		want := leaderOutput(ip)
		if h.State != "ok" || m.Count(h.Address) != 1 {
			t.Errorf("%s: %s (%s), ran %d times", h.Name, h.State, val(h.Error), m.Count(h.Address))
		}
		if got := stdout[h.Name]; got != want {
			t.Errorf("%s: websocket stdout %q, want %q; its messages: %q", h.Name, got, want, hostMsgs(f.Msgs, h.Name))
		}
		if ms := byHost[h.Name]; len(ms) < 2 || ms[len(ms)-2].Type != "exit" || val(ms[len(ms)-2].ExitCode) != 0 ||
			ms[len(ms)-1].Type != "status" || val(ms[len(ms)-1].State) != "ok" {
			t.Errorf("%s: the websocket does not end the host with exit 0 and ok: %q", h.Name, hostMsgs(f.Msgs, h.Name))
		}
		for j, s := range hostSeqs[h.Name] {
			if s != j+1 {
				t.Errorf("%s: host seqs %v over the websocket, want 1, 2, 3...", h.Name, hostSeqs[h.Name])
				break
			}
		}
		gw := d.Gateways[i%2]
		hl, err := gw.api.RunHostLogWithResponse(ctx, r.Id, h.Idx, nil)
		checkStatus(t, "host log of "+h.Name, err, hl.StatusCode(), http.StatusOK, hl.Body)
		if string(hl.Body) != want {
			t.Errorf("%s: host log %q, want %q", h.Name, hl.Body, want)
		}
	}
}

// waitNewStreamLeader waits (bounded) until a node other than old leads
// stream, and returns it.
func waitNewStreamLeader(t *testing.T, d *deployment, stream string, old int) int {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		if l := d.NATS.StreamLeader(t, stream); l != old {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still led by killed %s after %s", stream, d.NATS.Nodes[old].Name, waitLimit)
		}
		time.Sleep(100 * time.Millisecond) // polling the stream's info
	}
}

// waitWorkStreamsCurrent waits (bounded) until testum's streams and their
// durable consumers have a leader and every replica is current, so that the
// next kill takes a second node from nothing still catching up. (The
// transcript's ordered consumers are the gateways' own, R1, and left out.)
func waitWorkStreamsCurrent(t *testing.T, d *deployment) {
	t.Helper()
	js := d.JetStream(t)
	current := func(what string, ci *jetstream.ClusterInfo) error {
		if ci == nil || ci.Leader == "" {
			return fmt.Errorf("%s has no leader", what)
		}
		if len(ci.Replicas) != len(d.NATS.Nodes)-1 {
			return fmt.Errorf("%s has %d followers", what, len(ci.Replicas))
		}
		for _, p := range ci.Replicas {
			if !p.Current || p.Offline {
				return fmt.Errorf("%s: replica %s is not current", what, p.Name)
			}
		}
		return nil
	}
	check := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, w := range []struct{ stream, durable string }{
			{bus.StreamRuns, bus.ConsumerCoordinators}, {bus.StreamTasks, bus.ConsumerExecutors}, {bus.StreamOutput, ""},
		} {
			s, err := js.Stream(ctx, w.stream)
			if err != nil {
				return err
			}
			if err := current("stream "+w.stream, s.CachedInfo().Cluster); err != nil {
				return err
			}
			if w.durable == "" {
				continue
			}
			c, err := s.Consumer(ctx, w.durable)
			if err != nil {
				return err
			}
			if err := current("consumer "+w.durable, c.CachedInfo().Cluster); err != nil {
				return err
			}
		}
		return nil
	}
	deadline := time.Now().Add(waitLimit)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("streams not current after %s: %v", waitLimit, err)
		}
		time.Sleep(100 * time.Millisecond) // polling the streams' info
	}
}

// hostMsgs is the WebSocket messages about one host, for failure messages.
func hostMsgs(msgs []apiclient.WSMessage, host string) []string {
	var out []string
	for _, m := range msgs {
		if val(m.Host) == host {
			out = append(out, fmt.Sprintf("%d/%d %s %q", m.Seq, val(m.HostSeq), m.Type, m.Payload))
		}
	}
	return out
}

// Admit lets the commands waiting in WaitAdmitted go on up to the n-th
// host to start (in the order of their markers).
func (m *markers) Admit(t *testing.T, n int) {
	t.Helper()
	tmp := filepath.Join(m.dir, "admit.tmp")
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(n)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(m.dir, "admit")); err != nil { // a reader sees the old number or the new
		t.Fatal(err)
	}
}

// WaitAdmitted is a shell command, to follow Ran, that waits (bounded: 10
// minutes) until the test admitted as many hosts as have started so far.
func (m *markers) WaitAdmitted() string {
	return fmt.Sprintf(`n=$(ls %[1]s | grep -c '^ran-'); for i in $(seq 6000); do [ "$(cat %[1]s/admit)" -ge "$n" ] && break; sleep 0.1; done`, m.dir)
}

// waitLines waits (bounded) until the follower counted n stdout messages.
func waitLines(t *testing.T, lines *atomic.Int64, n int64) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for lines.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d stdout messages within %s, want %d", lines.Load(), waitLimit, n)
		}
		time.Sleep(20 * time.Millisecond) // polling the follower's count
	}
}
