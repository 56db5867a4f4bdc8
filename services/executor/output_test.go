package executor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/logstore"
	"github.com/testum/testum/libs/testum"
)

// fakeOutput records what a transcript publishes; fail, when set, decides
// each publish's error.
type fakeOutput struct {
	mu   sync.Mutex
	msgs []bus.OutputMsg
	fail func(bus.OutputMsg) error
}

func (f *fakeOutput) PublishOutput(_ context.Context, m bus.OutputMsg) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		if err := f.fail(m); err != nil {
			return err
		}
	}
	m.Data = bytes.Clone(m.Data)
	f.msgs = append(f.msgs, m)
	return nil
}

// PublishOutputAsync is PublishOutput with its outcome as an ack at once.
func (f *fakeOutput) PublishOutputAsync(m bus.OutputMsg) (pendingAck, error) {
	a := newHeldAck()
	a.resolve(f.PublishOutput(context.Background(), m))
	return a, nil
}

func (f *fakeOutput) sent() []bus.OutputMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bus.OutputMsg(nil), f.msgs...)
}

var testRunID = uuid.MustParse("6f1e2d3c-4b5a-4968-8776-655443322110")

func testAt() time.Time { return time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC) }

func newTestTranscript(t *testing.T, ctx context.Context, pub outputPublisher, capBytes int64) *transcript {
	t.Helper()
	cfg := transcriptConfig{pub: pub, spoolDir: t.TempDir(), log: slog.New(slog.DiscardHandler)}
	return newTranscript(ctx, cfg, testRunID, 2, 1, "web01", capBytes)
}

type outWrite struct {
	typ  bus.Type
	data string
}

// kinds lists the types of msgs, with consecutive chunks of one output
// stream counted once: how bytes coalesce into chunks depends on timing,
// the order of streams and control messages does not.
func kinds(msgs []bus.OutputMsg) []string {
	var out []string
	for _, m := range msgs {
		if k := len(out); k > 0 && m.Type.IsOutput() && out[k-1] == string(m.Type) {
			continue
		}
		out = append(out, string(m.Type))
	}
	return out
}

func streamText(msgs []bus.OutputMsg, typ bus.Type) string {
	var b strings.Builder
	for _, m := range msgs {
		if m.Type == typ {
			b.Write(m.Data)
		}
	}
	return b.String()
}

func TestTranscriptMessages(t *testing.T) {
	const secret = "hunter22-s3cret"
	big := strings.Repeat("0123456789abcdef", (2*bus.MaxChunk+100)/16)
	for _, tc := range []struct {
		name      string
		cap       int64
		secrets   []string
		writes    []outWrite
		errText   string // reported before close, as finish does
		exit      testum.HostState
		code      *int
		signal    string
		kinds     []string
		stdout    string
		stderr    string
		errors    []string
		exitData  string
		bytes     int64
		truncated bool
	}{
		{
			name:   "streams keep their order, then exit and status",
			cap:    1 << 20,
			writes: []outWrite{{bus.TypeStdout, "one\n"}, {bus.TypeStderr, "two\n"}, {bus.TypeStdout, "three\n"}},
			exit:   testum.HostOK, code: intp(0),
			kinds:  []string{"stdout", "stderr", "stdout", "exit", "status"},
			stdout: "one\nthree\n", stderr: "two\n", exitData: "0", bytes: 14,
		},
		{
			name:   "output larger than a chunk is split into chunks",
			cap:    1 << 20,
			writes: []outWrite{{bus.TypeStdout, big}},
			exit:   testum.HostFailed, code: intp(2),
			kinds:  []string{"stdout", "exit", "status"},
			stdout: big, exitData: "2", bytes: int64(len(big)),
		},
		{
			name:   "the cap truncates once and says so before the last bytes kept",
			cap:    5,
			writes: []outWrite{{bus.TypeStdout, "hello world"}, {bus.TypeStdout, "more"}},
			exit:   testum.HostOK, code: intp(0),
			kinds:  []string{"error", "stdout", "exit", "status"},
			stdout: "hello", exitData: "0", bytes: 5, truncated: true,
			errors: []string{"output truncated at 5 bytes (the per-host cap); the command kept running and the rest was discarded"},
		},
		{
			name:    "a secret split across writes is masked",
			cap:     1 << 20,
			secrets: []string{secret},
			writes:  []outWrite{{bus.TypeStdout, "pw=hunter"}, {bus.TypeStdout, "22-s3cret done\n"}},
			exit:    testum.HostOK, code: intp(0),
			kinds:  []string{"stdout", "exit", "status"},
			stdout: "pw=" + Mask + " done\n", exitData: "0", bytes: int64(len("pw=" + Mask + " done\n")),
		},
		{
			name:    "a held prefix of a secret is flushed at the end",
			cap:     1 << 20,
			secrets: []string{secret},
			writes:  []outWrite{{bus.TypeStderr, "x hunter2"}},
			exit:    testum.HostFailed, code: intp(1),
			kinds:  []string{"stderr", "exit", "status"},
			stderr: "x hunter2", exitData: "1", bytes: 9,
		},
		{
			name:    "masking happens before the cap counts",
			cap:     int64(len("a" + Mask)),
			secrets: []string{secret},
			writes:  []outWrite{{bus.TypeStdout, "a" + secret + "b"}},
			exit:    testum.HostOK, code: intp(0),
			kinds:  []string{"error", "stdout", "exit", "status"},
			stdout: "a" + Mask, exitData: "0", bytes: int64(len("a" + Mask)), truncated: true,
			errors: []string{"output truncated at 9 bytes (the per-host cap); the command kept running and the rest was discarded"},
		},
		{
			name:    "an error is masked and comes before exit",
			cap:     1 << 20,
			secrets: []string{secret},
			errText: "ssh: password " + secret + " refused",
			exit:    testum.HostAuthFailed,
			kinds:   []string{"error", "exit", "status"},
			errors:  []string{"ssh: password " + Mask + " refused"}, exitData: "auth_failed",
		},
		{
			name:   "a command killed by a signal has no code",
			cap:    1 << 20,
			writes: []outWrite{{bus.TypeStdout, "working\n"}},
			exit:   testum.HostTimeout, signal: "KILL",
			kinds:  []string{"stdout", "exit", "status"},
			stdout: "working\n", exitData: "timeout", bytes: 8,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub := &fakeOutput{}
			tr := newTestTranscript(t, context.Background(), pub, tc.cap)
			tr.status(testum.HostRunning)
			tr.maskSecrets(tc.secrets)
			for _, w := range tc.writes {
				if n, err := tr.write(w.typ, []byte(w.data)); n != len(w.data) || err != nil {
					t.Fatalf("write: %d, %v", n, err)
				}
			}
			if tc.errText != "" {
				tr.errorText(tc.errText)
			}
			stats := tr.close()
			tr.exit(tc.exit, tc.code, tc.signal)
			tr.closeControl()

			msgs := pub.sent()
			if len(msgs) == 0 || msgs[0].Type != bus.TypeStatus || msgs[0].State != string(testum.HostRunning) {
				t.Fatalf("first message %+v, want status running", msgs)
			}
			msgs = msgs[1:]
			if got := kinds(msgs); strings.Join(got, ",") != strings.Join(tc.kinds, ",") {
				t.Errorf("kinds %v, want %v", got, tc.kinds)
			}
			if got := streamText(msgs, bus.TypeStdout); got != tc.stdout {
				t.Errorf("stdout %q, want %q", got, tc.stdout)
			}
			if got := streamText(msgs, bus.TypeStderr); got != tc.stderr {
				t.Errorf("stderr %q, want %q", got, tc.stderr)
			}
			var errs []string
			for _, m := range msgs {
				if m.Type == bus.TypeError {
					errs = append(errs, string(m.Data))
				}
			}
			if strings.Join(errs, "|") != strings.Join(tc.errors, "|") {
				t.Errorf("errors %q, want %q", errs, tc.errors)
			}
			// Every message is this host attempt's, numbered from 1 without a gap.
			for i, m := range pub.sent() {
				if m.Seq != i+1 || m.Run != testRunID || m.Idx != 2 || m.Attempt != 1 || m.Host != "web01" || m.At.IsZero() {
					t.Errorf("message %d: %+v", i, m)
				}
				if len(m.Data) > bus.MaxChunk {
					t.Errorf("message %d: %d bytes, more than a chunk", i, len(m.Data))
				}
			}
			exit, status := msgs[len(msgs)-2], msgs[len(msgs)-1]
			if exit.Type != bus.TypeExit || string(exit.Data) != tc.exitData || exit.State != string(tc.exit) || exit.Signal != tc.signal {
				t.Errorf("exit %+v", exit)
			}
			if (exit.ExitCode == nil) != (tc.code == nil) || (tc.code != nil && *exit.ExitCode != *tc.code) {
				t.Errorf("exit code %v, want %v", exit.ExitCode, tc.code)
			}
			if status.Type != bus.TypeStatus || status.State != string(tc.exit) || string(status.Data) != string(tc.exit) {
				t.Errorf("status %+v", status)
			}
			sum := sha256.Sum256([]byte(strings.Join(outputOrder(msgs), "")))
			if stats.bytes != tc.bytes || stats.truncated != tc.truncated || stats.digest != hex.EncodeToString(sum[:]) {
				t.Errorf("stats %+v, want %d bytes, truncated %v", stats, tc.bytes, tc.truncated)
			}
		})
	}
}

// outputOrder is the output of msgs in the order it was published.
func outputOrder(msgs []bus.OutputMsg) []string {
	var out []string
	for _, m := range msgs {
		if m.Type.IsOutput() {
			out = append(out, string(m.Data))
		}
	}
	return out
}

func TestTranscriptNeverSplitsACharacter(t *testing.T) {
	pub := &fakeOutput{}
	tr := newTestTranscript(t, context.Background(), pub, 1<<20)
	text := strings.Repeat("€ü", 3000) // multi-byte characters across every split below
	b := []byte(text)
	for i := 0; i < len(b); i += 7 {
		_, _ = tr.write(bus.TypeStdout, b[i:min(i+7, len(b))])
	}
	tr.close()
	msgs := pub.sent()
	for _, m := range msgs {
		if !utf8.Valid(m.Data) {
			t.Fatalf("chunk %d is not whole characters: %q", m.Seq, m.Data)
		}
	}
	if got := streamText(msgs, bus.TypeStdout); got != text {
		t.Fatalf("output changed: %d bytes, want %d", len(got), len(text))
	}
}

// When NATS is gone for good the transcript stops publishing, the command's
// writes do not block, and the archive still has every byte.
func TestTranscriptArchivesWhatNATSLost(t *testing.T) {
	ctx, giveUp := context.WithCancel(context.Background())
	defer giveUp()
	pub := &fakeOutput{fail: func(bus.OutputMsg) error {
		giveUp() // publishing retries until its context ends
		return errors.New("nats: no servers available")
	}}
	tr := newTestTranscript(t, ctx, pub, 1<<30)
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	var want bytes.Buffer
	for range 2 * maxQueued / len(chunk) { // more than may wait for NATS
		_, _ = tr.write(bus.TypeStdout, chunk)
		want.Write(chunk)
	}
	stats := tr.close()
	if len(pub.sent()) != 0 {
		t.Fatalf("published %d messages", len(pub.sent()))
	}
	if stats.bytes != int64(want.Len()) {
		t.Fatalf("accepted %d bytes, want %d", stats.bytes, want.Len())
	}
	logs, err := logstore.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	spooled, err := tr.spool.Stat()
	if err != nil {
		t.Fatal(err)
	}
	key, err := tr.archive(context.Background(), logs)
	if err != nil || key != logstore.HostLogKey(testRunID, 2) {
		t.Fatalf("archive: %q, %v", key, err)
	}
	r, err := logs.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, _ := io.ReadAll(r)
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("archived %d bytes, want %d", len(got), want.Len())
	}
	// The spool and the archive share a filesystem: the spool file itself
	// became the log, no copy was made.
	if archived, err := r.(*os.File).Stat(); err != nil || !os.SameFile(spooled, archived) {
		t.Fatalf("the archived log is not the spool file moved (%v)", err)
	}
	if _, err := logs.Stat(context.Background(), logstore.HostIndexKey(testRunID, 2)); err != nil {
		t.Fatalf("index: %v", err)
	}
}

func TestHostControlMessagesContinueTheSequence(t *testing.T) {
	at := testAt()
	msgs := hostControlMsgs(testRunID, 4, "web04", testum.HostLost, "executor x stopped responding", 7, at)
	want := []bus.OutputMsg{
		{Run: testRunID, Idx: 4, Type: bus.TypeError, Host: "web04", Seq: 8, State: "lost", At: at, Data: []byte("executor x stopped responding")},
		{Run: testRunID, Idx: 4, Type: bus.TypeStatus, Host: "web04", Seq: 9, State: "lost", At: at, Data: []byte("lost")},
	}
	if len(msgs) != len(want) {
		t.Fatalf("%d messages: %+v", len(msgs), msgs)
	}
	for i := range want {
		if msgs[i].Seq != want[i].Seq || msgs[i].Type != want[i].Type || string(msgs[i].Data) != string(want[i].Data) ||
			msgs[i].State != want[i].State || msgs[i].Attempt != 0 || msgs[i].MsgID() != "" {
			t.Errorf("message %d: %+v, want %+v", i, msgs[i], want[i])
		}
	}
	if msgs := hostControlMsgs(testRunID, 4, "web04", testum.HostQueued, "", 0, at); len(msgs) != 1 || msgs[0].Seq != 1 || msgs[0].Type != bus.TypeStatus {
		t.Errorf("status only: %+v", msgs)
	}
	done := doneMsg(testum.Run{ID: testRunID, State: testum.RunSucceeded}, at)
	if done.Subject() != bus.OutputRunSubject(testRunID) || done.MsgID() != "done/"+testRunID.String() || string(done.Data) != "succeeded" {
		t.Errorf("done %+v", done)
	}
}

// Two attempts of one host archive apart: the one that lost the host (its
// executor was paused past the dead-after, then resumed) and finishes
// last must not overwrite the log of the attempt that replaced it.
func TestAttemptsArchiveApart(t *testing.T) {
	logs, err := logstore.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := transcriptConfig{pub: &fakeOutput{}, spoolDir: t.TempDir(), log: slog.New(slog.DiscardHandler)}
	archive := func(attempt int, text string) string {
		tr := newTranscript(context.Background(), cfg, testRunID, 2, attempt, "web01", 1<<20)
		_, _ = tr.write(bus.TypeStdout, []byte(text))
		tr.close()
		key, err := tr.archive(context.Background(), logs)
		if err != nil {
			t.Fatalf("archive attempt %d: %v", attempt, err)
		}
		if _, err := logs.Stat(context.Background(), logstore.IndexKeyOf(key)); err != nil {
			t.Fatalf("index of attempt %d: %v", attempt, err)
		}
		return key
	}
	second := archive(2, "the attempt that replaced it\n")
	first := archive(1, "the attempt that lost the host\n")
	if first != logstore.HostLogKey(testRunID, 2) || second == first {
		t.Fatalf("keys %q and %q", first, second)
	}
	r, err := logs.Get(context.Background(), second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, _ := io.ReadAll(r); string(got) != "the attempt that replaced it\n" {
		t.Fatalf("the second attempt's log reads %q", got)
	}
}
