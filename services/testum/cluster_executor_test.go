package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/testum/testum/libs/bus"
)

// TestClusterExecutorKilled: kill -9 of an executor that runs hosts of two
// runs, one with retry_lost, on a deployment of 2 gateways and 3
// executors. Four slots each and twelve hosts held at a gate put four
// running hosts on every executor, and hosts of both runs on at least one
// of them (six is no multiple of four): that one is killed. Its hosts end
// lost, or run once more elsewhere with retry_lost; every other host ran
// once and ended ok; both runs finish; the WebSocket replays without a
// duplicate.
func TestClusterExecutorKilled(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 2, 3, map[string]string{"TESTUM_EXECUTOR_SLOTS": "4"})
	m := newMarkers(t, d.SSHD)
	g := d.Gateways[0]
	cmd := m.Ran() + "; " + m.Gate() + "; echo done $$"
	once := g.startRun(t, map[string]any{"command": cmd, "timeout": 300,
		"targets": map[string]any{"platform_ids": d.Fleet(t, "ko", 6, 1000)}})
	retry := g.startRun(t, map[string]any{"command": cmd, "timeout": 300, "retry_lost": true,
		"targets": map[string]any{"platform_ids": d.Fleet(t, "kr", 6, 1010)}})
	m.WaitStarted(t, 12) // every slot of every executor holds a running host

	before := map[string]map[int]hostRecord{once: hostRecords(t, d, once), retry: hostRecords(t, d, retry)}
	var victim *executorProc
	for _, e := range d.Executors {
		if holds(before[once], e.ID) > 0 && holds(before[retry], e.ID) > 0 {
			victim = e
		}
	}
	if victim == nil {
		t.Fatalf("no executor runs hosts of both runs: %v", before)
	}
	victim.proc.Kill(t)
	killed := time.Now()

	// Its hosts end lost; with retry_lost they go back to the queue.
	waitFor(t, "the killed executor's hosts declared lost", func() bool {
		for id := range before {
			for idx, h := range hostRecords(t, d, id) {
				if was := before[id][idx]; was.Executor == victim.ID && h.Executor == victim.ID && h.State == "running" {
					return false
				}
			}
		}
		return true
	})
	lostAfter := time.Since(killed)
	m.Open(t)
	for _, id := range []string{once, retry} {
		d.Gateways[1].waitRun(t, id)
	}
	doneAfter := time.Since(killed)
	t.Logf("kill -9 of %s (%d hosts): its hosts lost %v after the kill, both runs final %v after it (the gate opened "+
		"once they were lost); README bound %v", victim.ID, holds(before[once], victim.ID)+holds(before[retry], victim.ID),
		lostAfter.Round(time.Millisecond), doneAfter.Round(time.Millisecond), d.Bound(t))

	for id, retried := range map[string]bool{once: false, retry: true} {
		for idx, h := range hostRecords(t, d, id) {
			onVictim := before[id][idx].Executor == victim.ID
			ran := m.Count(h.Address)
			switch {
			case onVictim && !retried:
				if h.State != "lost" || h.Attempt != 1 || ran != 1 || !strings.Contains(h.Error, "stopped responding") {
					t.Errorf("%s on the killed executor: %s attempt %d (%q), ran %d times", h.Name, h.State, h.Attempt, h.Error, ran)
				}
			case onVictim:
				if h.State != "ok" || h.Attempt != 2 || h.Executor == victim.ID || ran != 2 {
					t.Errorf("%s on the killed executor, retry_lost: %s attempt %d on %s, ran %d times", h.Name, h.State, h.Attempt, h.Executor, ran)
				}
			default:
				if h.State != "ok" || h.Attempt != 1 || ran != 1 {
					t.Errorf("%s: %s attempt %d on %s, ran %d times", h.Name, h.State, h.Attempt, h.Executor, ran)
				}
			}
		}
		f := &follower{t: t, id: id, next: func(n int) *server { return d.Gateways[n%2].server }}
		f.Follow()
	}
	if r := d.Gateways[1].getRun(t, retry); r.State != "succeeded" {
		t.Errorf("the retry_lost run ended %s: %+v", r.State, r.Counts)
	}
	if r := d.Gateways[1].getRun(t, once); r.State != "failed" {
		t.Errorf("the run without retries ended %s: %+v", r.State, r.Counts)
	}
}

// TestClusterExecutorPausedPastAckWait: SIGSTOP of an executor holding
// running hosts of two runs (one with retry_lost) and tasks it pulled but
// has not started (their hosts' SSH handshake waits behind a proxy that
// does not answer yet), longer than the ack wait and the dead-after, on a
// deployment of 2 gateways and 3 executors; then SIGCONT. The running
// hosts end lost, or run once more elsewhere with retry_lost; the tasks it
// held run once elsewhere; both runs finish. Once resumed, it runs nothing
// again, and it changes no host's record, log or transcript: checked after
// its next heartbeat and after it logged giving up every host it held.
func TestClusterExecutorPausedPastAckWait(t *testing.T) {
	t.Parallel()
	// One executor first, so that it takes every host; the other two start
	// while it is stopped. The connect timeout outlasts the pause.
	d := startDeployment(t, 2, 1, map[string]string{"TESTUM_CONNECT_TIMEOUT": "2m"})
	paused := d.Executors[0]
	m := newMarkers(t, d.SSHD)
	g := d.Gateways[0]
	var proxies []*gatedProxy
	var heldIDs []int64
	for i := range 3 {
		p, id := d.proxiedPlatform(t, fmt.Sprintf("ph%02d", i+1), 1050+i)
		proxies = append(proxies, p)
		heldIDs = append(heldIDs, id)
	}
	cmd := "echo start $$; " + m.Ran() + "; " + m.Gate() + "; echo end $$"
	once := g.startRun(t, map[string]any{"command": cmd, "timeout": 300,
		"targets": map[string]any{"platform_ids": append(d.Fleet(t, "po", 3, 1030), heldIDs...)}})
	retry := g.startRun(t, map[string]any{"command": cmd, "timeout": 300, "retry_lost": true,
		"targets": map[string]any{"platform_ids": d.Fleet(t, "pr", 3, 1040)}})
	m.WaitStarted(t, 6)
	waitFor(t, "the proxied hosts connecting on the first executor", func() bool {
		n := 0
		for _, h := range hostRecords(t, d, once) {
			if h.Executor == paused.ID && h.State == "connecting" {
				n++
			}
		}
		return n == len(heldIDs)
	})
	before := map[string]map[int]hostRecord{once: hostRecords(t, d, once), retry: hostRecords(t, d, retry)}
	paused.proc.Pause(t)
	pausedAt := time.Now()
	d.StartExecutor(t)
	d.StartExecutor(t)

	// The running hosts end lost (retry_lost: run again, held at the gate),
	// the proxied ones are queued again and dial anew from the others.
	waitFor(t, "the stopped executor's hosts taken from it", func() bool {
		for id := range before {
			for _, h := range hostRecords(t, d, id) {
				if h.Executor == paused.ID && (h.State == "running" || h.State == "connecting") {
					return false
				}
			}
		}
		return true
	})
	lostAfter := time.Since(pausedAt)
	waitFor(t, "the proxied hosts dialing from another executor", func() bool {
		for _, h := range hostRecords(t, d, once) {
			if before[once][h.Idx].Executor == paused.ID && before[once][h.Idx].State == "connecting" &&
				(h.Attempt < 2 || h.Executor == paused.ID || h.State != "connecting") {
				return false
			}
		}
		return true
	})
	for _, p := range proxies {
		p.open()
	}
	// The pause must outlast the ack wait and the dead-after, so that every
	// message the stopped executor held was redelivered, not only the runs
	// it coordinated handed over.
	ackWait, _ := time.ParseDuration(d.env["TESTUM_ACK_WAIT"])
	deadAfter, _ := time.ParseDuration(d.env["TESTUM_DEAD_AFTER"])
	waitFor(t, "every host started again and the pause past the ack wait", func() bool {
		return m.Started() == 9 && time.Since(pausedAt) > ackWait+deadAfter && coordinator(t, d, once) != paused.ID &&
			coordinator(t, d, retry) != paused.ID
	})
	m.Open(t)
	for _, id := range []string{once, retry} {
		d.Gateways[1].waitRun(t, id)
	}
	t.Logf("SIGSTOP of %s: its hosts taken from it %v after the stop; README bound %v; stopped for %v",
		paused.ID, lostAfter.Round(time.Millisecond), d.Bound(t), time.Since(pausedAt).Round(time.Millisecond))

	final := map[string]map[int]hostRecord{once: hostRecords(t, d, once), retry: hostRecords(t, d, retry)}
	ran := map[string]int{}
	for id, hosts := range final {
		for idx, h := range hosts {
			ran[h.Address] = m.Count(h.Address)
			was := before[id][idx]
			switch {
			case was.State == "connecting": // pulled, never started: run once, elsewhere
				if h.State != "ok" || h.Attempt != 2 || h.Executor == paused.ID || ran[h.Address] != 1 {
					t.Errorf("%s held unstarted: %s attempt %d on %s (%q), ran %d times", h.Name, h.State, h.Attempt, h.Executor, h.Error, ran[h.Address])
				}
			case id == retry:
				if h.State != "ok" || h.Attempt != 2 || h.Executor == paused.ID || ran[h.Address] != 2 {
					t.Errorf("%s with retry_lost: %s attempt %d on %s, ran %d times", h.Name, h.State, h.Attempt, h.Executor, ran[h.Address])
				}
			default:
				if h.State != "lost" || h.Attempt != 1 || ran[h.Address] != 1 {
					t.Errorf("%s: %s attempt %d (%q), ran %d times", h.Name, h.State, h.Attempt, h.Error, ran[h.Address])
				}
			}
			if h.LogKey != "" {
				if sum := logDigest(t, d.Gateways[1].server, id, idx); sum != h.OutputDigest {
					t.Errorf("%s: the log served has digest %s, the record %s", h.Name, sum, h.OutputDigest)
				}
				// The text form reads the index archived beside this attempt's log.
				text := string(mustCall(t, http.StatusOK, "GET", fmt.Sprintf("%s/api/runs/%s/hosts/%d/log?format=text",
					d.Gateways[1].URL, id, idx), nil, nil))
				if !strings.Contains(text, "stdout | start ") || !strings.Contains(text, "stdout | end ") {
					t.Errorf("%s: the log as text, attempt %d: %q", h.Name, h.Attempt, text)
				}
			}
		}
	}

	// SIGCONT: the stopped executor finds every host it held taken over.
	js := d.JetStream(t)
	resumeSeq := outputState(t, js).LastSeq
	beat := heartbeatAt(t, d, paused.ID)
	paused.proc.Resume(t)
	const gaveUp = "host was no longer this executor's to finish"
	waitFor(t, "the resumed executor's next heartbeat and its giving up every host it held", func() bool {
		return heartbeatAt(t, d, paused.ID).After(beat) && strings.Count(paused.proc.out.String(), gaveUp) >= 9
	})
	for id, hosts := range final {
		now := hostRecords(t, d, id)
		for idx, h := range hosts {
			if now[idx] != h {
				t.Errorf("%s changed after the stopped executor resumed:\n was %+v\n now %+v", h.Name, h, now[idx])
			}
			if c := m.Count(h.Address); c != ran[h.Address] {
				t.Errorf("%s ran %d times after the stopped executor resumed, %d before", h.Name, c, ran[h.Address])
			}
			if h.LogKey != "" {
				if sum := logDigest(t, d.Gateways[0].server, id, idx); sum != h.OutputDigest {
					t.Errorf("%s: after the resume the log served has digest %s, the record %s", h.Name, sum, h.OutputDigest)
				}
			}
			for _, o := range outputSince(t, js, id, idx, resumeSeq) {
				if o.Type.IsOutput() {
					continue // what the command printed while the executor was stopped: true, and marked with its attempt
				}
				t.Errorf("%s: the resumed executor announced %s %q for attempt %d", h.Name, o.Type, o.Data, o.Attempt)
			}
		}
	}
}

// hostRecord is what PostgreSQL says about one host of a run.
type hostRecord struct {
	Idx                                   int
	Name, Address, State, Executor, Error string
	Attempt                               int
	ExitCode                              string // "" when none
	LogKey, OutputDigest                  string
	OutputBytes                           int64
	FinishedAt                            string
}

// hostRecords reads a run's hosts from PostgreSQL, by index.
func hostRecords(t *testing.T, d *deployment, run string) map[int]hostRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT idx, name, address, state, coalesce(executor_id, ''), error, attempt, coalesce(exit_code::text, ''),
		log_key, output_digest, output_bytes, coalesce(finished_at::text, '') FROM run_hosts WHERE run_id = $1`, run)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]hostRecord{}
	for rows.Next() {
		var h hostRecord
		if err := rows.Scan(&h.Idx, &h.Name, &h.Address, &h.State, &h.Executor, &h.Error, &h.Attempt, &h.ExitCode,
			&h.LogKey, &h.OutputDigest, &h.OutputBytes, &h.FinishedAt); err != nil {
			t.Fatal(err)
		}
		out[h.Idx] = h
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// holds counts the hosts an executor holds.
func holds(hosts map[int]hostRecord, executor string) int {
	n := 0
	for _, h := range hosts {
		if h.Executor == executor {
			n++
		}
	}
	return n
}

// coordinator is the executor coordinating a run.
func coordinator(t *testing.T, d *deployment, run string) string {
	t.Helper()
	return queryString(t, d, `SELECT coalesce(coordinator_id, '') FROM runs WHERE id = $1`, run)
}

// heartbeatAt is an executor's last heartbeat, by the database clock.
func heartbeatAt(t *testing.T, d *deployment, executor string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, queryString(t, d,
		`SELECT to_char(heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') FROM executors WHERE id = $1`, executor))
	if err != nil {
		t.Fatal(err)
	}
	return at
}

func queryString(t *testing.T, d *deployment, sql string, args ...any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var s string
	if err := conn.QueryRow(ctx, sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// waitFor polls cond until it holds; waitLimit is the hang guard.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", waitLimit, what)
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronisation
	}
}

// logDigest is the sha256 of a host's log as a gateway serves it.
func logDigest(t *testing.T, s *server, run string, idx int) string {
	t.Helper()
	body := mustCall(t, http.StatusOK, "GET", fmt.Sprintf("%s/api/runs/%s/hosts/%d/log", s.URL, run, idx), nil, nil)
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// proxiedPlatform registers a platform on the sshd's host i reached through
// a proxy on that host's loopback address that accepts connections but
// forwards nothing until opened: an executor dialing it waits in the SSH
// handshake, holding the host's task without having started its command.
func (d *deployment) proxiedPlatform(t *testing.T, name string, i int) (*gatedProxy, int64) {
	t.Helper()
	ip := d.SSHD.Addr(i)
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	p := startGatedProxy(t, &gatedProxy{network: "tcp", target: net.JoinHostPort(ip, strconv.Itoa(d.SSHD.Port)), ln: ln})
	port := ln.Addr().(*net.TCPAddr).Port
	id := d.Gateways[0].createPlatform(t, map[string]any{"name": name, "host": ip, "port": port,
		"username": d.SSHD.PasswordUser.Name, "auth_method": "password", "password": d.SSHD.PasswordUser.Password})
	return p, id
}

// outputSince reads a host's transcript messages after stream sequence seq.
func outputSince(t *testing.T, js jetstream.JetStream, run string, idx int, seq uint64) []bus.OutputMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, bus.StreamOutput)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject: bus.OutputSubject(uuid.MustParse(run), idx), AckPolicy: jetstream.AckNonePolicy,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq + 1, InactiveThreshold: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	pending := int(c.CachedInfo().NumPending)
	var out []bus.OutputMsg
	for range 100 {
		if len(out) >= pending {
			return out
		}
		batch, err := c.Fetch(pending-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for msg := range batch.Messages() {
			o, err := bus.DecodeOutput(msg.Subject(), msg.Headers(), msg.Data())
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, o)
		}
	}
	t.Fatalf("host %d of run %s: %d of %d messages after seq %d", idx, run, len(out), pending, seq)
	return nil
}
