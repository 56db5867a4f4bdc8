package executor

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	retry "github.com/sethvargo/go-retry"

	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/logstore"
	"github.com/testum/testum/libs/metrics"
	"github.com/testum/testum/libs/testum"
)

// maxQueued is how much output may wait for NATS before the SSH reader
// blocks, which in turn stops the remote through SSH flow control: memory
// per session stays bounded however fast the host writes.
const maxQueued = 256 << 10

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
}

// outputPublisher sends transcript messages. JetStream is the real one;
// tests record what a transcript sends.
type outputPublisher interface {
	PublishOutput(ctx context.Context, m bus.OutputMsg) error
}

// jsOutput publishes transcript messages to the output stream.
type jsOutput struct{ js bus.Publisher }

func (p jsOutput) PublishOutput(ctx context.Context, m bus.OutputMsg) error {
	return bus.PublishOutput(ctx, p.js, m)
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

	mu       sync.Mutex
	cond     sync.Cond
	queue    []outItem
	queued   int // output bytes in queue
	draining bool
	ended    bool // output ended: no more writes, no holding back
	seq      int
	pubErr   error

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
}

func newTranscript(ctx context.Context, cfg transcriptConfig, run uuid.UUID, idx, attempt int, host string, capBytes int64) *transcript {
	t := &transcript{
		pub: cfg.pub, backoff: cfg.backoff, m: cfg.m, ctx: ctx, run: run, idx: idx, attempt: attempt, host: host,
		cap: capBytes, hash: sha256.New(),
		log:       cfg.log.With("run", run, "host", host),
		spoolPath: filepath.Join(cfg.spoolDir, fmt.Sprintf("%s-%d-%d", run, idx, attempt)),
	}
	t.cond.L = &t.mu
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
// stream up to the chunk size, copying (the caller reuses p).
func (t *transcript) enqueueOutputLocked(typ bus.Type, p []byte) {
	now := time.Now()
	t.queued += len(p)
	for len(p) > 0 {
		if k := len(t.queue); k > 0 && t.queue[k-1].typ == typ && len(t.queue[k-1].data) < bus.MaxChunk {
			last := &t.queue[k-1]
			take := min(len(p), bus.MaxChunk-len(last.data))
			last.data = append(last.data, p[:take]...)
			p = p[take:]
			continue
		}
		take := min(len(p), bus.MaxChunk)
		buf := make([]byte, take, min(bus.MaxChunk, max(take, 4096)))
		copy(buf, p[:take])
		t.queue = append(t.queue, outItem{typ: typ, data: buf, at: now})
		p = p[take:]
	}
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
	if !t.draining && len(t.queue) > 0 {
		t.draining = true
		go t.drain()
	}
}

// drain publishes queued items in order, one at a time: a synchronous
// publish per chunk keeps the stream's order equal to the host's, and the
// bytes that arrive meanwhile coalesce into the next chunk. It exits when
// the queue is empty, so an idle session costs no goroutine.
func (t *transcript) drain() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.queue) > 0 {
		it := t.queue[0]
		if it.typ.IsOutput() && len(t.queue) == 1 && !t.ended {
			// Never split a UTF-8 character across chunks while more may come.
			k := incompleteTail(it.data)
			if k == len(it.data) {
				break
			}
			if k > 0 {
				t.queue[0].data = append([]byte(nil), it.data[len(it.data)-k:]...)
				it.data = it.data[:len(it.data)-k]
			} else {
				t.queue = t.queue[1:]
			}
		} else {
			t.queue = t.queue[1:]
		}
		t.seq++
		seq, failed := t.seq, t.pubErr != nil
		t.mu.Unlock()
		var err error
		if !failed {
			err = t.publish(it, seq)
		}
		t.mu.Lock()
		if err != nil && t.pubErr == nil {
			t.pubErr = err
			t.log.Error("output no longer reaches NATS; the archive still keeps it", "err", err)
		}
		if it.typ.IsOutput() {
			t.queued -= len(it.data)
		}
		t.cond.Broadcast()
	}
	if len(t.queue) == 0 {
		t.queue = nil
	}
	t.draining = false
	t.cond.Broadcast()
}

func (t *transcript) publish(it outItem, seq int) error {
	m := bus.OutputMsg{
		Run: t.run, Idx: t.idx, Type: it.typ, Host: t.host, Seq: seq, Attempt: t.attempt,
		State: it.state, ExitCode: it.exit, Signal: it.sig, At: it.at, Data: it.data,
	}
	b := t.backoff
	if b == nil {
		b = publishBackoff
	}
	tries := 0
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
	for len(t.queue) > 0 || t.draining {
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
