package bus

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
)

var (
	testRun = uuid.MustParse("3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718")
	testAt  = time.Date(2026, 3, 4, 5, 6, 7, 890123000, time.UTC)
)

func intp(v int) *int { return &v }

// The wire format is shared by every version in a cluster: these are the
// exact subjects, headers, payloads and message ids that gateways and
// executors have always exchanged.
func TestOutputWireFormat(t *testing.T) {
	for _, tc := range []struct {
		name    string
		msg     OutputMsg
		subject string
		header  nats.Header
		data    string
		msgID   string
	}{
		{
			name: "stdout chunk of an attempt",
			msg: OutputMsg{Run: testRun, Idx: 3, Type: TypeStdout, Host: "web01", Seq: 7, Attempt: 1,
				At: testAt, Data: []byte("hello\n")},
			subject: "testum.out.3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718.3",
			header: nats.Header{
				"Testum-Type": {"stdout"}, "Testum-Host": {"web01"}, "Testum-Seq": {"7"},
				"Testum-Attempt": {"1"}, "Testum-At": {"2026-03-04T05:06:07.890123Z"},
			},
			data:  "hello\n",
			msgID: "3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718/3/1/7",
		},
		{
			name: "exit with a code",
			msg: OutputMsg{Run: testRun, Idx: 0, Type: TypeExit, Host: "db", Seq: 12, Attempt: 2,
				State: "failed", ExitCode: intp(3), At: testAt, Data: []byte("3")},
			subject: "testum.out.3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718.0",
			header: nats.Header{
				"Testum-Type": {"exit"}, "Testum-Host": {"db"}, "Testum-Seq": {"12"}, "Testum-Attempt": {"2"},
				"Testum-At": {"2026-03-04T05:06:07.890123Z"}, "Testum-State": {"failed"}, "Testum-Exit": {"3"},
			},
			data:  "3",
			msgID: "3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718/0/2/12",
		},
		{
			name: "exit by a signal, no code",
			msg: OutputMsg{Run: testRun, Idx: 1, Type: TypeExit, Host: "h", Seq: 4, Attempt: 1,
				State: "timeout", Signal: "KILL", At: testAt, Data: []byte("timeout")},
			subject: "testum.out.3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718.1",
			header: nats.Header{
				"Testum-Type": {"exit"}, "Testum-Host": {"h"}, "Testum-Seq": {"4"}, "Testum-Attempt": {"1"},
				"Testum-At": {"2026-03-04T05:06:07.890123Z"}, "Testum-State": {"timeout"}, "Testum-Signal": {"KILL"},
			},
			data:  "timeout",
			msgID: "3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718/1/1/4",
		},
		{
			name: "status of a host no attempt runs (reaper, coordinator)",
			msg: OutputMsg{Run: testRun, Idx: 9, Type: TypeStatus, Host: "web09", Seq: 2,
				State: "lost", At: testAt, Data: []byte("lost")},
			subject: "testum.out.3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718.9",
			header: nats.Header{
				"Testum-Type": {"status"}, "Testum-Host": {"web09"}, "Testum-Seq": {"2"},
				"Testum-State": {"lost"}, "Testum-At": {"2026-03-04T05:06:07.890123Z"},
			},
			data: "lost",
		},
		{
			name:    "done of the run",
			msg:     OutputMsg{Run: testRun, Idx: RunLevel, Type: TypeDone, State: "succeeded", At: testAt, Data: []byte("succeeded")},
			subject: "testum.out.3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718.run",
			header: nats.Header{
				"Testum-Type": {"done"}, "Testum-State": {"succeeded"}, "Testum-At": {"2026-03-04T05:06:07.890123Z"},
			},
			data:  "succeeded",
			msgID: "done/3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.msg.Encode()
			if m.Subject != tc.subject {
				t.Errorf("subject %q, want %q", m.Subject, tc.subject)
			}
			if !reflect.DeepEqual(m.Header, tc.header) {
				t.Errorf("headers %v, want %v", m.Header, tc.header)
			}
			if string(m.Data) != tc.data {
				t.Errorf("payload %q, want %q", m.Data, tc.data)
			}
			if id := tc.msg.MsgID(); id != tc.msgID {
				t.Errorf("msg id %q, want %q", id, tc.msgID)
			}
			got, err := DecodeOutput(tc.subject, tc.header, []byte(tc.data))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, tc.msg) {
				t.Errorf("decoded %+v, want %+v", got, tc.msg)
			}
		})
	}
}

func TestDecodeOutputRejects(t *testing.T) {
	good := nats.Header{"Testum-Type": {"stdout"}, "Testum-Seq": {"1"}}
	subj := OutputSubject(testRun, 2)
	with := func(k, v string) nats.Header {
		h := nats.Header{}
		for name, vs := range good {
			h[name] = vs
		}
		h.Set(k, v)
		return h
	}
	for _, tc := range []struct {
		name    string
		subject string
		header  nats.Header
	}{
		{"not an output subject", TaskSubject(testRun, 2), good},
		{"no run id", "testum.out.x.2", good},
		{"run id not canonical", "testum.out." + "{" + testRun.String() + "}.2", good},
		{"negative index", "testum.out." + testRun.String() + ".-1", good},
		{"index with a leading zero", "testum.out." + testRun.String() + ".02", good},
		{"too many tokens", subj + ".x", good},
		{"no type", subj, with("Testum-Type", "")},
		{"unknown type", subj, with("Testum-Type", "stdin")},
		{"sequence not a number", subj, with("Testum-Seq", "x")},
		{"sequence zero", subj, with("Testum-Seq", "0")},
		{"sequence with a sign", subj, with("Testum-Seq", "+1")},
		{"attempt not a number", subj, with("Testum-Attempt", "one")},
		{"exit code not a number", subj, with("Testum-Exit", "1.0")},
		{"time not RFC 3339", subj, with("Testum-At", "yesterday")},
	} {
		if m, err := DecodeOutput(tc.subject, tc.header, nil); err == nil {
			t.Errorf("%s: decoded %+v, want an error", tc.name, m)
		}
	}
}

// The JSON bodies of the work and event messages, exactly.
func TestJSONWireFormat(t *testing.T) {
	for _, tc := range []struct {
		name    string
		msg     *nats.Msg
		subject string
		data    string
	}{
		{"run", RunMsg{RunID: testRun}.Encode(), "testum.run.3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718",
			`{"run_id":"3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718"}`},
		{"task", TaskMsg{RunID: testRun, Idx: 4, Attempt: 2}.Encode(), "testum.task.3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718.4",
			`{"run_id":"3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718","idx":4,"attempt":2}`},
		{"host event", Event{RunID: testRun, Kind: EventHost, Idx: 4, Host: "web04", State: "ok", ExitCode: intp(0), At: testAt}.Encode(),
			"testum.evt.3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718",
			`{"run_id":"3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718","kind":"host","idx":4,"host":"web04","state":"ok","exit_code":0,"at":"2026-03-04T05:06:07.890123Z"}`},
		{"run event", Event{RunID: testRun, Kind: EventRun, State: "failed", At: testAt}.Encode(),
			"testum.evt.3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718",
			`{"run_id":"3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718","kind":"run","state":"failed","at":"2026-03-04T05:06:07.890123Z"}`},
		{"cancel", EncodeCancel(testRun), "testum.ctl.cancel.3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718", ""},
	} {
		if tc.msg.Subject != tc.subject {
			t.Errorf("%s: subject %q, want %q", tc.name, tc.msg.Subject, tc.subject)
		}
		if string(tc.msg.Data) != tc.data {
			t.Errorf("%s: body %s, want %s", tc.name, tc.msg.Data, tc.data)
		}
		if len(tc.msg.Header) != 0 {
			t.Errorf("%s: headers %v, want none", tc.name, tc.msg.Header)
		}
	}
	if id := (TaskMsg{RunID: testRun, Idx: 4, Attempt: 2}).MsgID(); id != "3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718/4/2" {
		t.Errorf("task msg id %q", id)
	}
	for reason, want := range map[string]string{
		"":       "3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718",
		"cancel": "3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718/cancel",
	} {
		if id := RunMsgID(testRun, reason); id != want {
			t.Errorf("run msg id for %q: %q, want %q", reason, id, want)
		}
	}
	if got, want := CancelAll, "testum.ctl.cancel.*"; got != want {
		t.Errorf("cancel filter %q, want %q", got, want)
	}
	if got, want := OutputFilter(testRun), "testum.out.3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718.*"; got != want {
		t.Errorf("output filter %q, want %q", got, want)
	}
}

func TestMessagesRoundTrip(t *testing.T) {
	tm := TaskMsg{RunID: testRun, Idx: 17, Attempt: 3}
	m := tm.Encode()
	if got, err := DecodeTask(m.Subject, m.Data); err != nil || got != tm {
		t.Errorf("task: %+v, %v", got, err)
	}
	rm := RunMsg{RunID: testRun}
	if got, err := DecodeRun(rm.Encode().Data); err != nil || got != rm {
		t.Errorf("run: %+v, %v", got, err)
	}
	ev := Event{RunID: testRun, Kind: EventHost, Idx: 2, Host: "h", State: "failed", ExitCode: intp(1), At: testAt}
	if got, err := DecodeEvent(ev.Encode().Data); err != nil || !reflect.DeepEqual(got, ev) {
		t.Errorf("event: %+v, %v", got, err)
	}
	if got, err := DecodeCancel(EncodeCancel(testRun)); err != nil || got != testRun {
		t.Errorf("cancel: %v, %v", got, err)
	}
	adv := []byte(`{"type":"io.nats.jetstream.advisory.v1.max_deliver","stream":"TESTUM_TASKS","consumer":"executors","stream_seq":42,"deliveries":10}`)
	if got, err := DecodeMaxDeliveries(adv); err != nil || got != (MaxDeliveries{Stream: StreamTasks, Consumer: ConsumerExecutors, StreamSeq: 42}) {
		t.Errorf("advisory: %+v, %v", got, err)
	}
	// An output message of every shape survives the trip, payload included.
	for _, o := range []OutputMsg{
		{Run: testRun, Idx: 0, Type: TypeStderr, Host: "a", Seq: 1, Attempt: 1, At: testAt, Data: []byte{0, 0xff, '\n'}},
		{Run: testRun, Idx: 5, Type: TypeError, Host: "b", Seq: 99, Attempt: 4, At: testAt, Data: []byte("output truncated")},
		{Run: testRun, Idx: 5, Type: TypeExit, Host: "b", Seq: 100, Attempt: 4, State: "failed", ExitCode: intp(-1), Signal: "TERM", At: testAt, Data: []byte("-1")},
		{Run: testRun, Idx: RunLevel, Type: TypeDone, State: "canceled", Data: []byte("canceled")},
	} {
		e := o.Encode()
		got, err := DecodeOutput(e.Subject, e.Header, e.Data)
		if err != nil || !reflect.DeepEqual(got, o) {
			t.Errorf("output %+v: got %+v, %v", o, got, err)
		}
	}
}

func TestDecodeTaskRejects(t *testing.T) {
	body := TaskMsg{RunID: testRun, Idx: 4, Attempt: 1}.Encode().Data
	other := uuid.MustParse("00000000-0000-4000-8000-000000000001")
	for _, tc := range []struct {
		name    string
		subject string
		data    []byte
	}{
		{"not JSON", TaskSubject(testRun, 4), []byte("{")},
		{"another host's subject", TaskSubject(testRun, 5), body},
		{"another run's subject", TaskSubject(other, 4), body},
		{"not a task subject", RunSubject(testRun), body},
		{"no attempt", TaskSubject(testRun, 4), []byte(`{"run_id":"` + testRun.String() + `","idx":4}`)},
	} {
		if got, err := DecodeTask(tc.subject, tc.data); err == nil {
			t.Errorf("%s: decoded %+v, want an error", tc.name, got)
		}
	}
}

func TestParseSubjects(t *testing.T) {
	for _, idx := range []int{0, 1, 10, 12345} {
		run, got, err := ParseTaskSubject(TaskSubject(testRun, idx))
		if err != nil || run != testRun || got != idx {
			t.Errorf("task %d: %v %d %v", idx, run, got, err)
		}
		run, got, err = ParseOutputSubject(OutputSubject(testRun, idx))
		if err != nil || run != testRun || got != idx {
			t.Errorf("output %d: %v %d %v", idx, run, got, err)
		}
	}
	if run, idx, err := ParseOutputSubject(OutputRunSubject(testRun)); err != nil || run != testRun || idx != RunLevel {
		t.Errorf("run-level output: %v %d %v", run, idx, err)
	}
	if OutputSubject(testRun, RunLevel) != OutputRunSubject(testRun) {
		t.Errorf("RunLevel subject %q", OutputSubject(testRun, RunLevel))
	}
	for _, bad := range []string{"", "testum.ctl.cancel.", "testum.ctl.cancel.x", "testum.ctl.kill." + testRun.String()} {
		if _, err := ParseCancelSubject(bad); err == nil {
			t.Errorf("cancel subject %q parsed", bad)
		}
	}
}

// FuzzDecodeOutput checks that no input makes the decoder panic, and that
// whatever it accepts encodes to a message that decodes to the same thing.
func FuzzDecodeOutput(f *testing.F) {
	at := testAt.Format(time.RFC3339Nano)
	f.Add(OutputSubject(testRun, 3), "stdout", "web01", "7", "1", "", "", "", at, []byte("hello\n"))
	f.Add(OutputSubject(testRun, 0), "exit", "db", "12", "2", "failed", "3", "", at, []byte("3"))
	f.Add(OutputSubject(testRun, 1), "exit", "h", "4", "1", "timeout", "", "KILL", at, []byte("timeout"))
	f.Add(OutputSubject(testRun, 9), "status", "web09", "2", "", "lost", "", "", at, []byte("lost"))
	f.Add(OutputRunSubject(testRun), "done", "", "", "", "succeeded", "", "", at, []byte("succeeded"))
	f.Add("testum.out.x.1", "stdout", "", "-1", "0", "", "1e3", "", "2026-01-01T00:00:00+03:00", []byte{0xff})
	f.Fuzz(func(t *testing.T, subject, typ, host, seq, attempt, state, exit, signal, at string, data []byte) {
		h := nats.Header{}
		for k, v := range map[string]string{hdrType: typ, hdrHost: host, hdrSeq: seq, hdrAttempt: attempt,
			hdrState: state, hdrExit: exit, hdrSignal: signal, hdrAt: at} {
			if v != "" {
				h.Set(k, v)
			}
		}
		o, err := DecodeOutput(subject, h, data)
		if err != nil {
			return
		}
		e := o.Encode()
		again, err := DecodeOutput(e.Subject, e.Header, e.Data)
		if err != nil {
			t.Fatalf("re-decoding %+v: %v", e, err)
		}
		if !reflect.DeepEqual(again, o) {
			t.Fatalf("round trip changed the message: %+v, then %+v", o, again)
		}
		if !bytes.Equal(e.Data, data) {
			t.Fatalf("payload changed")
		}
		// Everything but the time is carried as it came.
		for _, k := range []string{hdrType, hdrHost, hdrSeq, hdrAttempt, hdrState, hdrExit, hdrSignal} {
			if e.Header.Get(k) != h.Get(k) {
				t.Fatalf("header %s: %q, want %q", k, e.Header.Get(k), h.Get(k))
			}
		}
	})
}

// FuzzDecodeTask checks that the task decoder never panics and that a task
// it accepts is the one its subject names.
func FuzzDecodeTask(f *testing.F) {
	m := TaskMsg{RunID: testRun, Idx: 4, Attempt: 1}.Encode()
	f.Add(m.Subject, m.Data)
	f.Add(TaskSubject(testRun, 5), m.Data)
	f.Add("testum.task..", []byte(`{"run_id":"","idx":-1}`))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		tm, err := DecodeTask(subject, data)
		if err != nil {
			return
		}
		if e := tm.Encode(); e.Subject != subject {
			t.Fatalf("accepted %+v on %q, which belongs on %q", tm, subject, e.Subject)
		}
	})
}

// The broadcasts to gateways: the run-final subject names its run (and
// only a canonical one), the sessions-ended body its sessions.
func TestBroadcastsRoundTrip(t *testing.T) {
	var pub recorder
	if err := PublishRunFinal(&pub, testRun); err != nil {
		t.Fatal(err)
	}
	if got, err := ParseRunFinalSubject(pub.msgs[0].Subject); err != nil || got != testRun {
		t.Errorf("run final %q: %v, %v", pub.msgs[0].Subject, got, err)
	}
	for _, bad := range []string{"testum.bcast.final.x", "testum.bcast.final." + strings.ToUpper(testRun.String()), CancelSubject(testRun)} {
		if _, err := ParseRunFinalSubject(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	ids := []uuid.UUID{testRun, uuid.MustParse("00000000-0000-4000-8000-000000000001")}
	if err := PublishSessionsEnded(&pub, nil); err != nil || len(pub.msgs) != 1 {
		t.Fatalf("nothing ended, yet published: %v", err)
	}
	if err := PublishSessionsEnded(&pub, ids); err != nil {
		t.Fatal(err)
	}
	m := pub.msgs[1]
	if got, err := DecodeSessionsEnded(m.Data); m.Subject != SessionsEndedSubject || err != nil || !reflect.DeepEqual(got.Sessions, ids) {
		t.Errorf("sessions ended on %s: %+v, %v", m.Subject, got, err)
	}
}

// recorder is a CorePublisher that keeps what it was given.
type recorder struct{ msgs []*nats.Msg }

func (r *recorder) PublishMsg(m *nats.Msg) error { r.msgs = append(r.msgs, m); return nil }
