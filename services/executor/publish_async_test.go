package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/metrics"
	"github.com/testum/testum/libs/testenv"
)

// heldAck is a pendingAck its test resolves.
type heldAck struct {
	ok  chan *jetstream.PubAck
	err chan error
}

func newHeldAck() *heldAck {
	return &heldAck{ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
}

func (a *heldAck) resolve(err error) {
	if err != nil {
		a.err <- err
		return
	}
	a.ok <- &jetstream.PubAck{Stream: bus.StreamOutput}
}

func (a *heldAck) Ok() <-chan *jetstream.PubAck { return a.ok }
func (a *heldAck) Err() <-chan error            { return a.err }

// pubEvent is one publish a transcript made: async or waited for.
type pubEvent struct {
	async bool
	seq   int
	id    string
	held  int // publishes held when it was sent
}

// holdingOutput is a stream whose acks of asynchronous publishes its test
// holds and resolves. It keeps what was stored, once per message id, as
// JetStream's duplicate window does.
type holdingOutput struct {
	mu      sync.Mutex
	cond    sync.Cond
	events  []pubEvent
	held    []*heldMsg // sent asynchronously, not resolved yet, in order
	stored  []bus.OutputMsg
	ids     map[string]bool
	maxHeld int
	autoAck int // when this many are held, ack the oldest; 0: hold them all
	flush   bool
}

type heldMsg struct {
	m   bus.OutputMsg
	ack *heldAck
}

func newHoldingOutput() *holdingOutput {
	h := &holdingOutput{ids: map[string]bool{}}
	h.cond.L = &h.mu
	return h
}

func (h *holdingOutput) storeLocked(m bus.OutputMsg) {
	if !h.ids[m.MsgID()] {
		h.ids[m.MsgID()] = true
		m.Data = bytes.Clone(m.Data)
		h.stored = append(h.stored, m)
	}
}

func (h *holdingOutput) PublishOutput(_ context.Context, m bus.OutputMsg) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, pubEvent{seq: m.Seq, id: m.MsgID()})
	h.storeLocked(m)
	h.cond.Broadcast()
	return nil
}

func (h *holdingOutput) PublishOutputAsync(m bus.OutputMsg) (pendingAck, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, pubEvent{async: true, seq: m.Seq, id: m.MsgID(), held: len(h.held)})
	m.Data = bytes.Clone(m.Data)
	a := newHeldAck()
	h.held = append(h.held, &heldMsg{m: m, ack: a})
	h.maxHeld = max(h.maxHeld, len(h.held))
	if h.flush || (h.autoAck > 0 && len(h.held) >= h.autoAck) {
		h.resolveLocked(0, nil)
	}
	h.cond.Broadcast()
	return a, nil
}

// resolveLocked resolves the i-th held message: stored when err is nil.
func (h *holdingOutput) resolveLocked(i int, err error) {
	x := h.held[i]
	h.held = append(h.held[:i], h.held[i+1:]...)
	if err == nil {
		h.storeLocked(x.m)
	}
	x.ack.resolve(err)
}

// release acks everything held and everything sent from now on.
func (h *holdingOutput) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.flush = true
	for len(h.held) > 0 {
		h.resolveLocked(0, nil)
	}
}

// waitHeld waits (bounded) until n publishes are held.
func (h *holdingOutput) waitHeld(t *testing.T, n int) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	stop := time.AfterFunc(30*time.Second, func() { // a hang guard only
		h.mu.Lock()
		defer h.mu.Unlock()
		h.cond.Broadcast()
	})
	defer stop.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for len(h.held) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d publishes held, want %d", len(h.held), n)
		}
		h.cond.Wait()
	}
}

func (h *holdingOutput) snapshot() ([]pubEvent, []bus.OutputMsg, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]pubEvent(nil), h.events...), append([]bus.OutputMsg(nil), h.stored...), h.maxHeld
}

// pipelinedTranscript is a transcript on pub whose window is never closed
// by the age of an ack (a slow test machine must not change what is sent).
func pipelinedTranscript(t *testing.T, pub outputPublisher) *transcript {
	t.Helper()
	tr := newTestTranscript(t, context.Background(), pub, 1<<30)
	tr.maxAge = time.Hour
	return tr
}

// storedInSeqOrder checks that stored holds every seq from 1 without a
// gap or a copy, and returns it in seq order.
func storedInSeqOrder(t *testing.T, stored []bus.OutputMsg) []bus.OutputMsg {
	t.Helper()
	bySeq := make([]bus.OutputMsg, len(stored))
	for _, m := range stored {
		if m.Seq < 1 || m.Seq > len(stored) || bySeq[m.Seq-1].Seq != 0 {
			t.Fatalf("stored seq %d of %d messages: a gap or a copy", m.Seq, len(stored))
		}
		bySeq[m.Seq-1] = m
	}
	return bySeq
}

// Under load the transcript keeps up to its window of chunks in flight,
// never more, bytes coalescing into full chunks meanwhile; the stream gets
// every byte of each output stream in order, the sequence in send order,
// and the control messages where they were.
func TestTranscriptPipelinesChunksInOrder(t *testing.T) {
	pub := newHoldingOutput()
	pub.autoAck = outputWindow // an ack only once the window is full
	tr := pipelinedTranscript(t, pub)
	tr.status("running")
	var stdout, stderr bytes.Buffer
	const writes = 600
	for i := range writes {
		line := fmt.Appendf(nil, "%05d %s\n", i, strings.Repeat("é", 400)) // several writes a chunk
		typ, buf := bus.TypeStdout, &stdout
		if i%50 == 49 {
			typ, buf = bus.TypeStderr, &stderr
		}
		_, _ = tr.write(typ, line)
		buf.Write(line)
	}
	pub.release() // the last ones: the window does not fill again
	tr.close()
	tr.exit("ok", intp(0), "")
	tr.closeControl()

	events, stored, maxHeld := pub.snapshot()
	if maxHeld != outputWindow {
		t.Errorf("at most %d publishes in flight, want the window of %d", maxHeld, outputWindow)
	}
	for i, e := range events {
		if e.seq != i+1 {
			t.Fatalf("publish %d has seq %d: not in order", i, e.seq)
		}
	}
	if len(stored) != len(events) {
		t.Fatalf("%d stored of %d published", len(stored), len(events))
	}
	// Stored in send order: the seqs of the stream are in order.
	for i, m := range stored {
		if m.Seq != i+1 {
			t.Fatalf("stored %d has seq %d", i, m.Seq)
		}
		if len(m.Data) > bus.MaxChunk || (m.Type.IsOutput() && !utf8.Valid(m.Data)) {
			t.Fatalf("chunk %d: %d bytes, or not whole characters", m.Seq, len(m.Data))
		}
	}
	if got := streamText(stored, bus.TypeStdout); got != stdout.String() {
		t.Errorf("stdout differs: %d bytes, want %d", len(got), stdout.Len())
	}
	if got := streamText(stored, bus.TypeStderr); got != stderr.String() {
		t.Errorf("stderr differs: %d bytes, want %d", len(got), stderr.Len())
	}
	if len(stored) >= writes/2 {
		t.Errorf("%d messages for %d writes: no coalescing", len(stored), writes)
	}
	k := kinds(stored)
	if k[0] != "status" || strings.Join(k[len(k)-2:], ",") != "exit,status" {
		t.Errorf("kinds %v", k)
	}
	for _, e := range events {
		m := stored[e.seq-1]
		if e.async != m.Type.IsOutput() {
			t.Errorf("seq %d (%s) async %v: control messages wait for their acks, chunks do not", e.seq, m.Type, e.async)
		}
	}
}

// With nothing in flight a partial chunk goes at once.
func TestTranscriptSendsAPartialChunkAtOnce(t *testing.T) {
	pub := newHoldingOutput()
	tr := pipelinedTranscript(t, pub)
	_, _ = tr.write(bus.TypeStdout, []byte("$ "))
	pub.waitHeld(t, 1)
	pub.release()
	tr.close()
	if _, stored, _ := pub.snapshot(); len(stored) != 1 || string(stored[0].Data) != "$ " {
		t.Fatalf("stored %+v", stored)
	}
}

// The bytes of chunks in flight count against maxQueued until their acks
// come: with every ack held the writer blocks, and goes on once they come.
func TestTranscriptInFlightBytesHoldTheWriter(t *testing.T) {
	pub := newHoldingOutput()
	tr := pipelinedTranscript(t, pub)
	data := bytes.Repeat([]byte("0123456789abcdef"), 2*maxQueued/16)
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		_, _ = tr.write(bus.TypeStdout, data)
	}()
	pub.waitHeld(t, outputWindow)
	tr.mu.Lock()
	queued := tr.queued
	tr.mu.Unlock()
	if queued != len(data) {
		t.Fatalf("%d bytes queued with %d chunks in flight, want all %d", queued, outputWindow, len(data))
	}
	select {
	case <-wrote:
		t.Fatal("the write returned while every ack is held")
	default:
	}
	pub.release()
	select {
	case <-wrote:
	case <-time.After(30 * time.Second): // a hang guard only
		t.Fatal("the write still blocks after the acks came")
	}
	tr.close()
	_, stored, maxHeld := pub.snapshot()
	if maxHeld != outputWindow {
		t.Errorf("%d chunks in flight at most, want %d", maxHeld, outputWindow)
	}
	if got := streamText(stored, bus.TypeStdout); got != string(data) {
		t.Fatalf("stored %d bytes, want %d", len(got), len(data))
	}
}

// A failed ack stops the sending: once every publish in flight is
// answered, the failed ones go again, in order and with their ids, and
// then the rest; the stream ends with every message once.
func TestTranscriptRepublishesFailedAcksInOrder(t *testing.T) {
	pub := newHoldingOutput()
	tr := pipelinedTranscript(t, pub)
	// Chunks of an earlier version's stream, so that a whole window of them
	// fits in maxQueued.
	tr.chunk = bus.LegacyChunk
	chunk := bytes.Repeat([]byte("x"), tr.chunk)
	var want bytes.Buffer
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for i := range 16 {
			c := bytes.Repeat([]byte{'a' + byte(i)}, len(chunk))
			_, _ = tr.write(bus.TypeStdout, c)
			want.Write(c)
		}
	}()
	pub.waitHeld(t, outputWindow)
	// The last first, so that the transcript has every answer by the time
	// it reads the first: seqs 3 and 6 fail.
	pub.mu.Lock()
	for i := outputWindow - 1; i >= 0; i-- {
		var err error
		if s := pub.held[i].m.Seq; s == 3 || s == 6 {
			err = errors.New("nats: no response from stream")
		}
		pub.resolveLocked(i, err)
	}
	pub.flush = true
	pub.mu.Unlock()
	<-wrote
	tr.close()

	events, stored, _ := pub.snapshot()
	var head []string
	for _, e := range events[:outputWindow+2] {
		head = append(head, fmt.Sprintf("%v/%d", e.async, e.seq))
	}
	if got := strings.Join(head, " "); got != "true/1 true/2 true/3 true/4 true/5 true/6 true/7 true/8 false/3 false/6" {
		t.Errorf("publishes %s; want the window, then 3 and 6 again, waited for", got)
	}
	for _, e := range events[outputWindow+2:] {
		if e.held > 0 {
			t.Errorf("seq %d sent with %d in flight within the cooldown after a failure", e.seq, e.held)
		}
	}
	ids := map[int]string{}
	for _, e := range events {
		if id, ok := ids[e.seq]; ok && id != e.id {
			t.Errorf("seq %d published as %q and %q", e.seq, id, e.id)
		}
		ids[e.seq] = e.id
	}
	bySeq := storedInSeqOrder(t, stored)
	if got := streamText(bySeq, bus.TypeStdout); got != want.String() {
		t.Errorf("stored %d bytes in seq order, want %d", len(got), want.Len())
	}
	if tr.pubErr != nil {
		t.Errorf("gave up: %v", tr.pubErr)
	}
}

// Through a real JetStream: a transcript of several MB arrives whole, in
// order, its seqs in stream order.
func TestTranscriptStreamsMegabytesThroughJetStream(t *testing.T) {
	srv := testenv.NATS(t)
	nc, js := srv.JetStream(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute) // a hang guard only
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	out, err := newJSOutput(nc, js)
	if err != nil {
		t.Fatal(err)
	}
	cfg := transcriptConfig{pub: out, spoolDir: t.TempDir(), log: slog.New(slog.DiscardHandler)}
	tr := newTranscript(ctx, cfg, testRunID, 2, 1, "web01", 1<<30)
	var want bytes.Buffer
	for i := range 100_000 {
		line := fmt.Appendf(nil, "line %06d of a long transcript, with some padding to make it longer\n", i)
		_, _ = tr.write(bus.TypeStdout, line)
		want.Write(line)
	}
	stats := tr.close()
	tr.exit("ok", intp(0), "")
	tr.closeControl()
	if tr.pubErr != nil || stats.bytes != int64(want.Len()) {
		t.Fatalf("publish error %v; %d bytes accepted of %d", tr.pubErr, stats.bytes, want.Len())
	}

	cons, err := js.OrderedConsumer(ctx, bus.StreamOutput, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{bus.OutputFilter(testRunID)}})
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	seq := 0
	for done := false; !done; {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			o, err := bus.DecodeOutput(m.Subject(), m.Headers(), m.Data())
			if err != nil {
				t.Fatal(err)
			}
			if seq++; o.Seq != seq {
				t.Fatalf("message %d of the stream has seq %d", seq, o.Seq)
			}
			if o.Type.IsOutput() {
				got.Write(o.Data)
			}
			done = o.Type == bus.TypeStatus
		}
		if n == 0 {
			t.Fatalf("the stream ends after %d messages without the final status", seq)
		}
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("the stream has %d bytes, want %d in order", got.Len(), want.Len())
	}
	t.Logf("%d bytes in %d messages", got.Len(), seq)
}

// The leader of the output stream killed while transcripts stream as fast
// as they can (their windows full): every host's messages are stored
// once, whole, and in the stream's order their seqs go 1, 2, 3... (what
// the WebSocket relays and a resume relies on).
func TestTranscriptsRideOutAnOutputLeaderKill(t *testing.T) {
	t.Parallel()
	cluster := testenv.StartNATSCluster(t)
	nc := cluster.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute) // a hang guard only
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitJetStream(t)
	cluster.WaitCurrent(t, bus.StreamOutput)
	out, err := newJSOutput(nc, js)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	cfg := transcriptConfig{pub: out, spoolDir: t.TempDir(), log: slog.New(slog.DiscardHandler), m: m}
	const hosts, lines = 4, 40_000
	var wg sync.WaitGroup
	wants := make([][]byte, hosts)
	half := make(chan struct{}, hosts)
	for h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := newTranscript(ctx, cfg, testRunID, h, 1, fmt.Sprintf("web%02d", h), 1<<30)
			var want bytes.Buffer
			for i := range lines {
				if i == lines/4 {
					half <- struct{}{}
				}
				line := fmt.Appendf(nil, "host %d line %06d %s\n", h, i, strings.Repeat("=", i%97))
				_, _ = tr.write(bus.TypeStdout, line)
				want.Write(line)
			}
			tr.close()
			tr.exit("ok", intp(0), "")
			tr.closeControl()
			if tr.pubErr != nil {
				t.Errorf("host %d gave up: %v", h, tr.pubErr)
			}
			wants[h] = want.Bytes()
		}()
	}
	for range hosts {
		<-half
	}
	leader := cluster.StreamLeader(t, bus.StreamOutput)
	cluster.Kill(t, leader)
	t.Logf("killed %s, the output stream's leader", cluster.Nodes[leader].Name)
	wg.Wait()
	cluster.Restart(t, leader)

	cons, err := js.OrderedConsumer(ctx, bus.StreamOutput, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{bus.OutputFilter(testRunID)}})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]bytes.Buffer, hosts)
	seqs := make([]int, hosts)
	ended := 0
	for ended < hosts {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			o, err := bus.DecodeOutput(m.Subject(), m.Headers(), m.Data())
			if err != nil {
				t.Fatal(err)
			}
			if seqs[o.Idx]++; o.Seq != seqs[o.Idx] {
				t.Fatalf("host %d: seq %d stored where %d was due", o.Idx, o.Seq, seqs[o.Idx])
			}
			if o.Type.IsOutput() {
				got[o.Idx].Write(o.Data)
			}
			if o.Type == bus.TypeStatus && o.State == "ok" {
				ended++
			}
		}
		if n == 0 {
			t.Fatalf("the stream ends with %d of %d hosts ended", ended, hosts)
		}
	}
	for h := range hosts {
		if !bytes.Equal(got[h].Bytes(), wants[h]) {
			t.Errorf("host %d: %d bytes stored, want %d in order", h, got[h].Len(), len(wants[h]))
		}
	}
	t.Logf("%d hosts, %d messages, %v publishes tried again", hosts, sum(seqs), testutil.ToFloat64(m.PublishRetries))
}

func sum(v []int) int {
	n := 0
	for _, x := range v {
		n += x
	}
	return n
}

// syncOnly hides an asynchronous publisher's PublishOutputAsync: every
// message waits for its ack, as transcripts did before.
type syncOnly struct{ outputPublisher }

// BenchmarkTranscriptJetStream: a transcript's output through an
// embedded JetStream, 32 KiB writes, waiting for every ack or not.
func BenchmarkTranscriptJetStream(b *testing.B) {
	srv := testenv.NATS(b)
	nc, js := srv.JetStream(b)
	if err := bus.EnsureStreams(b.Context(), js, bus.StreamsConfig{}); err != nil {
		b.Fatal(err)
	}
	out, err := newJSOutput(nc, js)
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 32<<10)
	for _, c := range []struct {
		name string
		pub  outputPublisher
	}{{"async", out}, {"sync", syncOnly{out}}} {
		b.Run(c.name, func(b *testing.B) {
			cfg := transcriptConfig{pub: c.pub, spoolDir: b.TempDir(), log: slog.New(slog.DiscardHandler)}
			tr := newTranscript(b.Context(), cfg, uuid.New(), 0, 1, "web01", 1<<40)
			b.SetBytes(int64(len(chunk)))
			for b.Loop() {
				_, _ = tr.write(bus.TypeStdout, chunk)
			}
			tr.close()
			if tr.pubErr != nil {
				b.Fatal(tr.pubErr)
			}
		})
	}
}
