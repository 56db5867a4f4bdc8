package gateway

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/bus"
)

func TestMostlyEscaped(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want bool
	}{
		{"text", []byte("hello world\n\tindented\r\n"), false},
		{"colours", []byte("\x1b[31mred\x1b[0m \x1b[1;32mgreen\x1b[0m\n"), false},
		{"progress bar", []byte("\r[#####     ] 50%\r[##########] 100%\n"), false},
		{"zeros", make([]byte, 4096), true},
		{"a few controls", []byte(strings.Repeat("a line of text\n", 20) + "\x07\x08"), false},
		{"mostly controls", bytes.Repeat([]byte{0x01, 'a', 0x02}, 100), true},
	} {
		if got := mostlyEscaped(tc.data); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A transcript message reaches the WebSocket with the fields the relay has
// always sent: the host's index except on run-level messages, the
// executor's sequence and attempt, the exit code, and text or base64.
func TestWSRender(t *testing.T) {
	run := uuid.MustParse("3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718")
	at := time.Date(2026, 3, 4, 5, 6, 7, 890123000, time.UTC)
	code, idx := 3, 2
	for _, tc := range []struct {
		name string
		msg  bus.OutputMsg
		want apiclient.WSMessage
	}{
		{"output", bus.OutputMsg{Run: run, Idx: 2, Type: bus.TypeStdout, Host: "web02", Seq: 5, Attempt: 1, At: at, Data: []byte("hi\n")},
			apiclient.WSMessage{Type: "stdout", Host: opt("web02"), Seq: 40, Payload: "hi\n", Idx: &idx, HostSeq: opt(5), Attempt: opt(1), At: opt("2026-03-04T05:06:07.890123Z")}},
		{"binary output", bus.OutputMsg{Run: run, Idx: 2, Type: bus.TypeStderr, Host: "web02", Seq: 6, Attempt: 1, At: at, Data: []byte{0xff, 0}},
			apiclient.WSMessage{Type: "stderr", Host: opt("web02"), Seq: 40, Payload: "/wA=", Encoding: opt(apiclient.Base64), Idx: &idx, HostSeq: opt(6), Attempt: opt(1), At: opt("2026-03-04T05:06:07.890123Z")}},
		{"exit", bus.OutputMsg{Run: run, Idx: 2, Type: bus.TypeExit, Host: "web02", Seq: 7, Attempt: 1, State: "failed", ExitCode: &code, Signal: "TERM", At: at, Data: []byte("3")},
			apiclient.WSMessage{Type: "exit", Host: opt("web02"), Seq: 40, Payload: "3", Idx: &idx, HostSeq: opt(7), Attempt: opt(1), State: opt("failed"), ExitCode: &code, Signal: opt("TERM"), At: opt("2026-03-04T05:06:07.890123Z")}},
		{"done", bus.OutputMsg{Run: run, Idx: bus.RunLevel, Type: bus.TypeDone, State: "succeeded", Data: []byte("succeeded")},
			apiclient.WSMessage{Type: "done", Seq: 40, Payload: "succeeded", State: opt("succeeded")}},
	} {
		if got := wsRender(tc.msg, 40); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// A transcript message's JSON frame, its payload written straight into the
// frame, is byte for byte the frame of the message that wsRender makes and
// encoding/json encodes: every byte value, the escapes JSON has short forms
// for, U+2028 and U+2029, bytes that are not UTF-8, binary output, and
// payloads whose frames take each of the three lengths of a frame header.
func TestTranscriptFrameMatchesEncodingJSON(t *testing.T) {
	run := uuid.MustParse("3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718")
	at := time.Date(2026, 3, 4, 5, 6, 7, 890123000, time.UTC)
	code := 3
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	payloads := map[string][]byte{
		"empty":          nil,
		"text":           []byte("hello <world> & \"friends\" \\ back\n\ttab\r\n"),
		"short escapes":  []byte("\b\f\n\r\t"),
		"every byte":     all,
		"ascii controls": []byte("a\x00b\x01c\x1fd\x7fe\x1b[0m"),
		"separators":     []byte("line\u2028para\u2029end é ü 日本"),
		"not utf-8":      {'a', 0xff, 'b', 0xc3},
		"zeros":          make([]byte, bus.MaxChunk),
		"big text":       bytes.Repeat([]byte("0123456789abcdef\n"), bus.MaxChunk/17),
		"big escapes":    bytes.Repeat([]byte(`"\`), bus.MaxChunk/2), // over 64 KiB in JSON
		"125 bytes":      bytes.Repeat([]byte("x"), 125),
	}
	msgs := []bus.OutputMsg{
		{Run: run, Idx: 2, Type: bus.TypeStdout, Host: "web02", Seq: 5, Attempt: 1, At: at},
		{Run: run, Idx: 0, Type: bus.TypeStderr, Host: `we"b\u0000"payload":""`, Seq: 6, Attempt: 2},
		{Run: run, Idx: 2, Type: bus.TypeExit, Host: "web02", Seq: 7, Attempt: 1, State: "failed", ExitCode: &code, Signal: "TERM", At: at},
		{Run: run, Idx: bus.RunLevel, Type: bus.TypeDone, State: "succeeded"},
	}
	var scratch bytes.Buffer
	for _, o := range msgs {
		for name, data := range payloads {
			o.Data = data
			want, err := appendJSONFrame([]byte("before"), &scratch, wsRender(o, 40))
			if err != nil {
				t.Fatal(err)
			}
			got, err := appendTranscriptFrame([]byte("before"), &scratch, o, 40)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s %s: frame differs from encoding/json's\n got %.300q\nwant %.300q", o.Type, name, got, want)
			}
		}
	}
}
