package executor

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	retry "github.com/sethvargo/go-retry"

	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/logstore"
	"github.com/testum/testum/libs/metrics"
	"github.com/testum/testum/libs/testum"
)

// maxQueued is how much output may wait for NATS before the SSH reader
// blocks, which in turn stops the remote through SSH flow control: memory
// per session stays bounded however fast the host writes. It holds four
// chunks of bus.MaxChunk in flight, and is half of what the SSH channel
// itself lets a host send ahead (x/crypto/ssh's 2 MiB window); a host that
// writes little never gets near it.
const maxQueued = 1 << 20

// publishGiveUp bounds how long one transcript message is retried while NATS
// is away; the archive keeps the bytes either way.
const publishGiveUp = 2 * time.Minute

type outItem struct {
	typ   bus.Type
	data  []byte
	at    time.Time
	state string // status, exit: the state; exit: also exit and signal below
	exit  *int
	sig   string
	full  bool // output: the chunk takes no more bytes (it ends short of the chunk limit on a character boundary)
	// pooled: data is a buffer of chunkPool, returned to it once the chunk
	// is acked (or given up).
	pooled bool
}

// open reports whether more output may join the item's chunk of at most
// limit bytes.
func (it *outItem) open(limit int) bool { return !it.full && len(it.data) < limit }

// chunkPool holds buffers of bus.MaxChunk bytes for chunks that coalesce
// under load: a host that floods fills one after the other, and reusing
// them spares the allocation (and the growth copies) of every chunk.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, bus.MaxChunk); return &b }}

// releaseChunk returns an acked chunk's buffer to chunkPool. Nothing may
// hold the data after its ack: the publishers copy it onto the connection
// when they send it.
func releaseChunk(it *outItem) {
	if it.pooled && cap(it.data) == bus.MaxChunk {
		b := it.data[:0]
		chunkPool.Put(&b)
	}
	it.data, it.pooled = nil, false
}

// outputPublisher sends transcript messages. JetStream is the real one;
// tests record what a transcript sends.
type outputPublisher interface {
	// PublishOutput publishes a message and waits for its ack.
	PublishOutput(ctx context.Context, m bus.OutputMsg) error
}

// asyncOutputPublisher is an outputPublisher that can also send a message
// without waiting for its ack. Messages sent one after the other from one
// goroutine reach the stream in that order.
type asyncOutputPublisher interface {
	outputPublisher
	PublishOutputAsync(m bus.OutputMsg) (pendingAck, error)
}

// pendingAck is the ack to come of a message sent: exactly one of its
// channels delivers, in a bounded time (jetstream.PubAckFuture with an
// ack timeout).
type pendingAck interface {
	Ok() <-chan *jetstream.PubAck
	Err() <-chan error
}

// jsOutput publishes transcript messages to the output stream.
type jsOutput struct {
	js    bus.Publisher
	async bus.AsyncPublisher // from bus.NewAsyncPublisher
}

// newJSOutput publishes on js, and without waiting for acks on a JetStream
// context of nc of its own (one whose acks time out).
func newJSOutput(nc *nats.Conn, js bus.Publisher) (jsOutput, error) {
	async, err := bus.NewAsyncPublisher(nc)
	if err != nil {
		return jsOutput{}, fmt.Errorf("jetstream: %w", err)
	}
	return jsOutput{js: js, async: async}, nil
}

func (p jsOutput) PublishOutput(ctx context.Context, m bus.OutputMsg) error {
	return bus.PublishOutput(ctx, p.js, m)
}

func (p jsOutput) PublishOutputAsync(m bus.OutputMsg) (pendingAck, error) {
	return bus.PublishOutputAsync(p.async, m)
}

// transcript is one host attempt's transcript: output chunks and control
// messages, published in order on the host's output subject with a
// per-host sequence, while the raw output is spooled for the archive.
type transcript struct {
	pub     outputPublisher
	ctx     context.Context // publishing gives up when it ends
	run     uuid.UUID
	idx     int
	attempt int
	host    string
	cap     int64
	log     *slog.Logger
	backoff func() retry.Backoff // nil: publishBackoff
	m       *metrics.Metrics     // nil: not counted
	chunk   int                  // the largest output chunk (bus.ChunkLimit)

	async asyncOutputPublisher // nil: every message waits for its ack

	mu          sync.Mutex
	cond        sync.Cond
	queue       []outItem
	inflight    []flight      // sent, not acked yet, in order
	queued      int           // output bytes in queue and in flight
	kick        chan struct{} // wakes a drain waiting for an ack: more to send
	window      int           // output chunks in flight at most: outputWindow
	maxAge      time.Duration // no more in flight while the oldest is older: pipelineAge
	serialUntil time.Time     // one message at a time until then (a publish failed)
	draining    bool
	ended       bool // output ended: no more writes, no holding back
	seq         int
	pubErr      error

	mask      *secretMask // nil: nothing to mask
	accepted  int64
	truncated bool
	hash      hash.Hash

	spoolPath string
	spool     *os.File
	index     *os.File
	indexW    *bufio.Writer
	spoolErr  error
	lastIdx   indexEntry
}

type indexEntry struct {
	at     time.Time
	typ    bus.Type
	offset int64
	length int64
}

// transcriptConfig is where a transcript sends and spools its messages.
type transcriptConfig struct {
	pub      outputPublisher
	spoolDir string
	log      *slog.Logger
	backoff  func() retry.Backoff // paces publish retries; nil: publishBackoff
	m        *metrics.Metrics     // counts output bytes and publish retries; nil: not counted
	chunk    int                  // the largest output chunk the output stream takes (bus.ChunkLimit); 0: bus.MaxChunk
}

func newTranscript(ctx context.Context, cfg transcriptConfig, run uuid.UUID, idx, attempt int, host string, capBytes int64) *transcript {
	t := &transcript{
		pub: cfg.pub, backoff: cfg.backoff, m: cfg.m, ctx: ctx, run: run, idx: idx, attempt: attempt, host: host,
		cap: capBytes, hash: sha256.New(), chunk: cfg.chunk,
		log:       cfg.log.With("run", run, "host", host),
		spoolPath: filepath.Join(cfg.spoolDir, fmt.Sprintf("%s-%d-%d", run, idx, attempt)),
	}
	t.cond.L = &t.mu
	if t.chunk <= 0 || t.chunk > bus.MaxChunk {
		t.chunk = bus.MaxChunk
	}
	t.kick, t.window, t.maxAge = make(chan struct{}, 1), outputWindow, pipelineAge
	if a, ok := cfg.pub.(asyncOutputPublisher); ok {
		t.async = a
	}
	return t
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// writer returns the io.Writer of one output stream.
func (t *transcript) writer(typ bus.Type) io.Writer {
	return writerFunc(func(p []byte) (int, error) { return t.write(typ, p) })
}

// write accepts output up to the cap. Past the cap the bytes are read and
// discarded (the command keeps running) and a marker says so. It blocks
// while too much output waits for NATS.
func (t *transcript) write(typ bus.Type, p []byte) (int, error) {
	n := len(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended {
		return n, nil
	}
	if t.mask != nil {
		p = t.mask.write(string(typ), p)
	}
	t.acceptLocked(typ, p)
	for t.queued > maxQueued && !t.ended && t.pubErr == nil && t.ctx.Err() == nil {
		t.cond.Wait()
	}
	return n, nil
}

// maskSecrets makes every later write replace these secrets (those of at
// least MinMaskLen bytes) with Mask, before the stream, the archive and the
// digest see the bytes.
func (t *transcript) maskSecrets(secrets []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mask = newSecretMask(secrets)
}

// maskText masks the secrets in a message about the host (its error).
func (t *transcript) maskText(s string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mask.text(s)
}

// acceptLocked spools, counts and queues output up to the cap.
func (t *transcript) acceptLocked(typ bus.Type, p []byte) {
	if room := t.cap - t.accepted; int64(len(p)) > room {
		p = p[:max(room, 0)]
		if !t.truncated {
			t.truncated = true
			t.queue = append(t.queue, outItem{typ: bus.TypeError, at: time.Now(),
				data: fmt.Appendf(nil, "output truncated at %d bytes (the per-host cap); the command kept running and the rest was discarded", t.cap)})
		}
	}
	if len(p) > 0 {
		t.spoolLocked(typ, p)
		t.hash.Write(p)
		t.accepted += int64(len(p))
		if t.m != nil {
			t.m.OutputBytes.Add(float64(len(p)))
		}
		t.enqueueOutputLocked(typ, p)
	}
	t.kickLocked()
}

// enqueueOutputLocked appends p, merging with the last item of the same
// stream up to the chunk size, copying (the caller reuses p). A chunk that
// p overflows ends on a character boundary, a few bytes short of the chunk
// limit if need be, so that no chunk splits a UTF-8 character.
//
// A chunk begun while others are in flight waits for an ack and gathers
// what arrives meanwhile, so it takes a whole buffer of chunkPool at once;
// one begun with nothing in flight goes as it is and gets what it holds.
func (t *transcript) enqueueOutputLocked(typ bus.Type, p []byte) {
	now := time.Now()
	t.queued += len(p)
	for len(p) > 0 {
		if k := len(t.queue); k > 0 && t.queue[k-1].typ == typ && t.queue[k-1].open(t.chunk) {
			last := &t.queue[k-1]
			room := t.chunk - len(last.data)
			if len(p) <= room {
				last.data = append(last.data, p...)
				return
			}
			// Fill the chunk up to the last boundary within it.
			end := append(lastBytes(last.data, 3), p[:room]...)
			take := room - incompleteTail(end)
			if take < 0 {
				// The character began in the chunk: it goes with the next one.
				carry := last.data[len(last.data)+take:]
				p = append(append([]byte(nil), carry...), p...)
				last.data = last.data[:len(last.data)+take]
				take = 0
			}
			last.data = append(last.data, p[:take]...)
			last.full = true
			p = p[take:]
			continue
		}
		take := min(len(p), t.chunk)
		full := take < len(p)
		if full {
			take -= incompleteTail(p[:take])
		}
		it := outItem{typ: typ, at: now, full: full}
		if (len(t.inflight) > 0 || full) && t.chunk > bus.MaxChunk/2 {
			it.data, it.pooled = (*chunkPool.Get().(*[]byte))[:take], true
		} else {
			it.data = make([]byte, take, min(t.chunk, max(take, 4096)))
		}
		copy(it.data, p[:take])
		t.queue = append(t.queue, it)
		p = p[take:]
	}
}

// lastBytes returns a copy of the last n bytes of b (fewer if b is shorter).
func lastBytes(b []byte, n int) []byte {
	return append([]byte(nil), b[max(len(b)-n, 0):]...)
}

// control queues a non-output message (status, error, exit).
func (t *transcript) control(it outItem) {
	it.at = time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.queue = append(t.queue, it)
	t.kickLocked()
}

func (t *transcript) status(s testum.HostState) {
	t.control(outItem{typ: bus.TypeStatus, data: []byte(s), state: string(s)})
}

func (t *transcript) errorText(msg string) {
	t.control(outItem{typ: bus.TypeError, data: []byte(t.maskText(msg))})
}

func (t *transcript) exit(s testum.HostState, code *int, signal string) {
	it := outItem{typ: bus.TypeExit, state: string(s), sig: signal, data: []byte(s)}
	if code != nil {
		it.exit = intp(*code)
		it.data = []byte(strconv.Itoa(*code))
	}
	t.control(it)
	t.status(s)
}

func (t *transcript) kickLocked() {
	if len(t.queue) == 0 {
		return
	}
	if !t.draining {
		t.draining = true
		go t.drain()
		return
	}
	select { // the drain may be waiting for an ack: it looks at the queue again
	case t.kick <- struct{}{}:
	default:
	}
}

// drain publishes queued items in order, as the only sender of the
// transcript, and exits when nothing is queued or in flight, so an idle
// session costs no goroutine.
//
// Output chunks go without waiting for their acks, up to outputWindow at
// once, while the oldest in flight is younger than pipelineAge and no
// publish failed in the last pipelineCooldown: the messages of one
// transcript are sent in order on one connection, so the stream stores
// them in order, and keeping the window to healthy acks keeps out of it
// the moments when a stream's leader changes (when a message could fail
// while the next one is stored, and its republish land after it). While
// chunks are in flight the bytes that arrive meanwhile coalesce into the
// next chunk, up to the chunk limit; with nothing in flight a partial chunk
// goes at once, so interactive output stays immediate. The bytes stay
// counted in queued (the writers' back-pressure) until their ack.
//
// A control message (status, error, exit) goes alone: after every chunk
// before it is acked, and before anything after it is sent. So the last
// message of a host's subject is its last message, whatever failed.
//
// When an ack fails, nothing more is sent: drain waits for every publish
// in flight, republishes the unacked ones in order with their message ids
// (the stream drops a copy it already has) and the publish backoff, and
// goes one at a time for pipelineCooldown.
func (t *transcript) drain() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		if t.sendLocked() {
			continue
		}
		if len(t.inflight) == 0 {
			break // nothing more to send now: the queue is empty or holds a partial character
		}
		t.awaitAckLocked()
	}
	if len(t.queue) == 0 {
		t.queue = nil
	}
	t.draining = false
	t.cond.Broadcast()
}

// sendLocked sends the next queued item if it may go now, and reports
// whether it did something (sent, or dropped the item after a give-up).
func (t *transcript) sendLocked() bool {
	if len(t.queue) == 0 {
		return false
	}
	head := t.queue[0]
	inflight := len(t.inflight)
	if !head.typ.IsOutput() {
		if inflight > 0 {
			return false // a control message waits for every chunk before it
		}
		it, seq := t.popLocked()
		t.publishNowLocked(it, seq, false)
		return true
	}
	if inflight > 0 {
		switch {
		case t.async == nil || inflight >= t.window || time.Now().Before(t.serialUntil):
			return false
		case time.Since(t.inflight[0].sent) > t.maxAge:
			return false // the stream is slow to answer: wait rather than pile up
		case len(t.queue) == 1 && head.open(t.chunk) && !t.ended:
			return false // coalescing: more bytes may join this chunk until an ack comes
		case t.failedLocked():
			return false // nothing more until what is in flight is republished
		}
	}
	if len(t.queue) == 1 && !t.ended {
		// Never split a UTF-8 character across chunks while more may come.
		if incompleteTail(head.data) == len(head.data) {
			return false
		}
	}
	it, seq := t.popLocked()
	if t.pubErr != nil {
		t.ackedLocked(it) // given up: the archive keeps the bytes
		return true
	}
	if t.async == nil {
		t.publishNowLocked(it, seq, false)
		return true
	}
	m := t.msg(it, seq)
	t.mu.Unlock()
	ack, err := t.async.PublishOutputAsync(m)
	t.mu.Lock()
	if err != nil {
		// Not sent: republished after what is in flight, as a failed ack is.
		ack = newFailedAck(err)
	}
	t.inflight = append(t.inflight, flight{it: it, seq: seq, ack: ack, sent: time.Now()})
	return true
}

// popLocked takes the next item off the queue (an output chunk without a
// trailing partial character while more may come) and numbers it.
func (t *transcript) popLocked() (outItem, int) {
	it := t.queue[0]
	if k := incompleteTail(it.data); it.typ.IsOutput() && len(t.queue) == 1 && !t.ended && k > 0 {
		t.queue[0].data = append([]byte(nil), it.data[len(it.data)-k:]...)
		t.queue[0].full = false // the character's rest joins it
		it.data = it.data[:len(it.data)-k]
	} else {
		t.queue = t.queue[1:]
	}
	t.seq++
	return it, t.seq
}

// publishNowLocked publishes one message and waits for it (retrying it with
// the publish backoff); retried says an earlier try already failed.
func (t *transcript) publishNowLocked(it outItem, seq int, retried bool) {
	failed := t.pubErr != nil
	t.mu.Unlock()
	var err error
	if !failed {
		err = t.publishTry(it, seq, retried)
	}
	t.mu.Lock()
	t.failLocked(err)
	t.ackedLocked(it)
}

func (t *transcript) failLocked(err error) {
	if err != nil && t.pubErr == nil {
		t.pubErr = err
		t.log.Error("output no longer reaches NATS; the archive still keeps it", "err", err)
	}
}

// ackedLocked releases a published (or given up) item's bytes to the
// writers, and its buffer.
func (t *transcript) ackedLocked(it outItem) {
	if it.typ.IsOutput() {
		t.queued -= len(it.data)
		releaseChunk(&it)
	}
	t.cond.Broadcast()
}

// awaitAckLocked waits for the oldest publish in flight to be acked, or for
// more to send (a kick); a failed ack is recovered from here.
func (t *transcript) awaitAckLocked() {
	f := &t.inflight[0]
	if !f.done {
		ack := f.ack
		t.mu.Unlock()
		var err error
		select {
		case <-ack.Ok():
		case err = <-ack.Err():
		case <-t.ctx.Done():
			err = t.ctx.Err()
		case <-t.kick:
			t.mu.Lock()
			return
		}
		t.mu.Lock()
		f = &t.inflight[0]
		f.done, f.err = true, err
	}
	if f.err != nil {
		t.recoverLocked()
		return
	}
	if t.m != nil {
		t.m.PublishDuration.Observe(time.Since(f.sent).Seconds()) // as timedPublisher times a waited publish
	}
	t.ackedLocked(f.it)
	t.inflight[0] = flight{} // its bytes are the writers' again
	t.inflight = t.inflight[1:]
}

// failedLocked reports whether a publish in flight is known to have
// failed, looking at the acks that came without waiting.
func (t *transcript) failedLocked() bool {
	failed := false
	for i := range t.inflight {
		f := &t.inflight[i]
		if !f.done {
			select {
			case <-f.ack.Ok():
				f.done = true
			case err := <-f.ack.Err():
				f.done, f.err = true, err
			default:
			}
		}
		failed = failed || (f.done && f.err != nil)
	}
	return failed
}

// recoverLocked handles a failed publish in flight: it waits for every
// other one, then republishes those not acked, in order, with their message
// ids, one at a time, and stays one at a time for pipelineCooldown.
func (t *transcript) recoverLocked() {
	flights := t.inflight
	t.mu.Unlock()
	for i := range flights {
		f := &flights[i]
		if f.done {
			continue
		}
		select {
		case <-f.ack.Ok():
		case f.err = <-f.ack.Err():
		case <-t.ctx.Done():
			f.err = t.ctx.Err()
		}
		f.done = true
	}
	t.mu.Lock()
	t.inflight = nil
	t.serialUntil = time.Now().Add(pipelineCooldown)
	for _, f := range flights {
		if f.err != nil {
			t.log.Warn("transcript message not acked; publishing it again", "seq", f.seq, "err", f.err)
			t.publishNowLocked(f.it, f.seq, true)
			continue
		}
		t.ackedLocked(f.it)
	}
}

// The asynchronous window of a transcript (see drain).
const (
	outputWindow     = 8                     // chunks in flight at most
	pipelineAge      = 50 * time.Millisecond // no more chunks while the oldest in flight is older
	pipelineCooldown = 10 * time.Second      // one at a time after a failed publish
)

// flight is a message sent and not acked yet.
type flight struct {
	it   outItem
	seq  int
	ack  pendingAck
	sent time.Time
	done bool  // the ack came (or failed): err says which
	err  error // why it failed
}

// failedAck is the pending ack of a message that could not be sent.
type failedAck struct{ err chan error }

func newFailedAck(err error) failedAck {
	f := failedAck{err: make(chan error, 1)}
	f.err <- err
	return f
}

func (f failedAck) Ok() <-chan *jetstream.PubAck { return nil }

func (f failedAck) Err() <-chan error { return f.err }

func (t *transcript) msg(it outItem, seq int) bus.OutputMsg {
	return bus.OutputMsg{
		Run: t.run, Idx: t.idx, Type: it.typ, Host: t.host, Seq: seq, Attempt: t.attempt,
		State: it.state, ExitCode: it.exit, Signal: it.sig, At: it.at, Data: it.data,
	}
}

// publish publishes one message, retrying it with the publish backoff.
func (t *transcript) publish(it outItem, seq int) error { return t.publishTry(it, seq, false) }

// publishTry is publish; retried says an earlier try already failed (the
// first try here counts as a retry).
func (t *transcript) publishTry(it outItem, seq int, retried bool) error {
	m := t.msg(it, seq)
	b := t.backoff
	if b == nil {
		b = publishBackoff
	}
	tries := 0
	if retried {
		tries = 1
	}
	if err := retryUntil(t.ctx, b(), 10*time.Second, nil, "", func(ctx context.Context) error {
		if tries++; tries > 1 && t.m != nil {
			t.m.PublishRetries.Inc()
		}
		return t.pub.PublishOutput(ctx, m)
	}); err != nil {
		return fmt.Errorf("seq %d: %w", seq, err)
	}
	return nil
}

// waitIdleLocked waits until every queued item is published (or given up).
func (t *transcript) waitIdleLocked() {
	t.kickLocked()
	for len(t.queue) > 0 || len(t.inflight) > 0 || t.draining {
		t.cond.Wait()
	}
}

type outputStats struct {
	bytes     int64
	truncated bool
	digest    string
}

// close ends the output: everything written is published and spooled.
func (t *transcript) close() outputStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.ended && t.mask != nil {
		// What was held back as a possible secret's beginning was not one.
		for _, typ := range []bus.Type{bus.TypeStdout, bus.TypeStderr} {
			t.acceptLocked(typ, t.mask.flush(string(typ)))
		}
	}
	t.ended = true
	t.cond.Broadcast()
	t.waitIdleLocked()
	t.closeSpoolLocked()
	return outputStats{bytes: t.accepted, truncated: t.truncated, digest: hex.EncodeToString(t.hash.Sum(nil))}
}

// closeControl waits for the control messages queued after close.
func (t *transcript) closeControl() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.waitIdleLocked()
}

// spoolLocked appends output to the host's spool file and its index.
func (t *transcript) spoolLocked(typ bus.Type, p []byte) {
	if t.spoolErr != nil {
		return
	}
	if t.spool == nil {
		f, err := os.OpenFile(t.spoolPath+".log", os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
		if err != nil {
			t.spoolErr = err
			return
		}
		x, err := os.OpenFile(t.spoolPath+".idx", os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
		if err != nil {
			_ = f.Close() // the spool is abandoned; the open error is the one to keep
			t.spoolErr = err
			return
		}
		t.spool, t.index, t.indexW = f, x, bufio.NewWriterSize(x, 4096)
	}
	if _, err := t.spool.Write(p); err != nil {
		t.spoolErr = err
		return
	}
	now := time.Now()
	// Consecutive writes of one stream within 10ms share an index line.
	if l := &t.lastIdx; l.length > 0 && l.typ == typ && now.Sub(l.at) < 10*time.Millisecond {
		l.length += int64(len(p))
		return
	}
	t.flushIndexLocked()
	t.lastIdx = indexEntry{at: now, typ: typ, offset: t.accepted, length: int64(len(p))}
}

func (t *transcript) flushIndexLocked() {
	if l := t.lastIdx; l.length > 0 && t.indexW != nil {
		fmt.Fprintf(t.indexW, "%s %s %d %d\n", l.at.UTC().Format(time.RFC3339Nano), l.typ, l.offset, l.length)
	}
	t.lastIdx = indexEntry{}
}

func (t *transcript) closeSpoolLocked() {
	if t.spool == nil {
		return
	}
	t.flushIndexLocked()
	if t.truncated && t.indexW != nil {
		fmt.Fprintf(t.indexW, "%s truncated %d 0\n", time.Now().UTC().Format(time.RFC3339Nano), t.accepted)
	}
	if t.indexW != nil {
		if err := t.indexW.Flush(); err != nil && t.spoolErr == nil {
			t.spoolErr = err
		}
	}
}

// archive stores the spooled log and index and removes the spool. A host
// without output has nothing to archive and gets no key.
func (t *transcript) archive(ctx context.Context, logs logstore.Store) (string, error) {
	t.mu.Lock()
	spool, index, spoolErr := t.spool, t.index, t.spoolErr
	t.spool, t.index = nil, nil
	t.mu.Unlock()
	if spool == nil {
		return "", spoolErr
	}
	defer func() {
		// The spool files are scratch space, archived or not by now.
		_ = spool.Close()
		_ = index.Close()
		_ = os.Remove(spool.Name())
		_ = os.Remove(index.Name())
	}()
	if spoolErr != nil {
		return "", fmt.Errorf("spooling output: %w", spoolErr)
	}
	key := logstore.HostAttemptLogKey(t.run, t.idx, t.attempt)
	if a, ok := logs.(fileAdopter); ok {
		// The spool is the log: moved into the archive, not copied.
		err := a.Adopt(ctx, []logstore.LocalFile{{Key: key, File: spool}, {Key: logstore.IndexKeyOf(key), File: index}})
		if err == nil {
			return key, nil
		}
		if !errors.Is(err, logstore.ErrCrossDevice) {
			t.log.Warn("moving the spooled log into the archive; copying it", "err", err)
		}
		// The open files still read every byte, moved or not.
	}
	for _, part := range []struct {
		f   *os.File
		key string
	}{{spool, key}, {index, logstore.IndexKeyOf(key)}} {
		err := keepTrying(ctx, t.log, "archive log", func(ctx context.Context) error {
			size, err := part.f.Seek(0, io.SeekEnd)
			if err != nil {
				return err
			}
			if _, err := part.f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			return logs.Put(ctx, part.key, part.f, size)
		})
		if err != nil {
			return "", err
		}
	}
	return key, nil
}

// fileAdopter is a log store that can take finished local files as they
// are (logstore.Disk on the spool's filesystem).
type fileAdopter interface {
	Adopt(ctx context.Context, files []logstore.LocalFile) error
}

// incompleteTail returns how many trailing bytes of b begin a UTF-8
// character that is not complete yet (0 when b ends on a boundary).
func incompleteTail(b []byte) int {
	for k := 1; k <= 3 && k <= len(b); k++ {
		c := b[len(b)-k]
		if c < 0x80 {
			return 0 // ASCII: a boundary
		}
		if c >= 0xC0 { // a lead byte
			var need int
			switch {
			case c >= 0xF0:
				need = 4
			case c >= 0xE0:
				need = 3
			default:
				need = 2
			}
			if need > k && !utf8.FullRune(b[len(b)-k:]) {
				return k
			}
			return 0
		}
	}
	return 0
}
