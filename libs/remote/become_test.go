package remote

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/testum/testum/libs/testum"
)

// reads collects what the command's stdin would receive, in the background.
type reads struct {
	got  chan []byte
	done chan struct{}
}

func readAll(t *testing.T, r io.Reader) *reads {
	t.Helper()
	rs := &reads{got: make(chan []byte, 100), done: make(chan struct{})}
	go func() {
		defer close(rs.done)
		buf := make([]byte, 64)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				rs.got <- append([]byte(nil), buf[:n]...)
			}
			if err != nil {
				return
			}
		}
	}()
	return rs
}

// next waits for the next stdin bytes (a hang guard, not a timing test).
func (rs *reads) next(t *testing.T) string {
	t.Helper()
	select {
	case b := <-rs.got:
		return string(b)
	case <-rs.done:
		select {
		case b := <-rs.got:
			return string(b)
		default:
		}
		return "<EOF>"
	case <-time.After(10 * time.Second):
		t.Fatal("stdin gave nothing")
	}
	return ""
}

// nothing checks that stdin has given nothing so far and that nothing is
// due: the decisions are read from Become itself, so a password or body
// released too early is caught whether or not the reading goroutine has
// run yet. prompts is how many prompts Become should have seen.
func (rs *reads) nothing(t *testing.T, bc *Become, prompts int) {
	t.Helper()
	bc.mu.Lock()
	seen, started, over := bc.prompts, bc.succeeded, bc.ended || bc.refused
	bc.mu.Unlock()
	if seen != prompts || started || over {
		t.Fatalf("Become decided too early: %d prompts (want %d), root shell started %v, stdin over %v", seen, prompts, started, over)
	}
	select {
	case b := <-rs.got:
		t.Fatalf("stdin gave %q too early", b)
	case <-rs.done:
		t.Fatal("stdin ended too early")
	default:
	}
}

// writeHalves writes s in two parts split at at, checking between them
// that nothing is due when the first part holds less than token's end.
func writeHalves(t *testing.T, rs *reads, bc *Become, w io.Writer, s string, at, tokenEnd, prompts int) {
	t.Helper()
	at = min(at, len(s))
	if _, err := w.Write([]byte(s[:at])); err != nil {
		t.Fatal(err)
	}
	if at < tokenEnd {
		rs.nothing(t, bc, prompts)
	}
	if _, err := w.Write([]byte(s[at:])); err != nil {
		t.Fatal(err)
	}
}

func writeSplit(t *testing.T, w io.Writer, s string, at int) {
	t.Helper()
	for _, part := range []string{s[:at], s[at:]} {
		if n, err := w.Write([]byte(part)); err != nil || n != len(part) {
			t.Fatalf("write %q: %d %v", part, n, err)
		}
	}
}

// all waits for stdin to end and returns everything it gave.
func (rs *reads) all(t *testing.T) string {
	t.Helper()
	var got strings.Builder
	for range 1000 {
		b := rs.next(t)
		if b == "<EOF>" {
			return got.String()
		}
		got.WriteString(b)
	}
	t.Fatal("stdin did not end")
	return ""
}

// TestBecomeAnswersOnlyItsPrompt: at every split point of the prompt and
// of the success marker (both on stderr), the password goes out only after
// the whole prompt, the body only after the whole marker, neither marker is
// passed on, and stdout is passed on untouched.
func TestBecomeAnswersOnlyItsPrompt(t *testing.T) {
	_, _, probe := Build(testumSudo("id -u"), "pw")
	for at := 0; at <= len(probe.Prompt())+len(probe.Success())+20; at++ {
		_, stdin, bc := Build(testumSudo("id -u"), "pw")
		var out, errb bytes.Buffer
		stdout, stderr := bc.Stdout(&out), bc.Stderr(&errb)
		rs := readAll(t, stdin)

		promptText := "bashrc: warning\n" + bc.Prompt()
		writeHalves(t, rs, bc, stderr, promptText, at, len(promptText), 0)
		if got := rs.next(t); got != "pw\n" {
			t.Fatalf("split %d: stdin %q, want the password", at, got)
		}
		rs.nothing(t, bc, 1)
		writeSplit(t, stdout, "motd\n", min(at, 5))
		rs.nothing(t, bc, 1)
		successText := "\n" + bc.Success() + "\nerr\n"
		writeHalves(t, rs, bc, stderr, successText, at, len(bc.Success())+2, 1)
		if got := rs.all(t); got != "id -u\n" {
			t.Fatalf("split %d: stdin %q, want the body", at, got)
		}
		_, _ = stdout.Write([]byte("0\n"))
		bc.Flush()
		if out.String() != "motd\n0\n" || errb.String() != "bashrc: warning\n\nerr\n" {
			t.Fatalf("split %d: stdout %q stderr %q", at, out.String(), errb.String())
		}
	}
}

// TestBecomeIgnoresPromptsAfterSuccess: a command run by a NOPASSWD sudoer
// can read sudo's prompt from its parent's command line and print it; on
// stderr after the success marker, or anywhere on stdout, it is the
// command's output, never sudo asking: stdin never gives the password, and
// the look-alike is passed on as the command printed it. At every split
// point of both tokens, in one chunk and in two.
func TestBecomeIgnoresPromptsAfterSuccess(t *testing.T) {
	_, _, probe := Build(testumSudo(""), "pw")
	for at := 0; at <= len(probe.Success())+len(probe.Prompt())+2; at++ {
		for _, body := range []string{"", "cat"} {
			_, stdin, bc := Build(testumSudo(body), "pw")
			var out, errb bytes.Buffer
			stdout, stderr := bc.Stdout(&out), bc.Stderr(&errb)
			rs := readAll(t, stdin)
			_, _ = stdout.Write([]byte(bc.Prompt()))
			rs.nothing(t, bc, 0)
			text := bc.Success() + "\n" + bc.Prompt()
			writeSplit(t, stderr, text, min(at, len(text)))
			_, _ = stderr.Write([]byte(bc.Prompt()))
			want := ""
			if body != "" {
				want = body + "\n"
			}
			if got := rs.all(t); got != want {
				t.Fatalf("split %d body %q: stdin %q, want %q and no password", at, body, got, want)
			}
			bc.Flush()
			if out.String() != bc.Prompt() || errb.String() != bc.Prompt()+bc.Prompt() || bc.Refused() {
				t.Fatalf("split %d: stdout %q stderr %q refused %v", at, out.String(), errb.String(), bc.Refused())
			}
		}
	}
}

// TestBecomePromptAndSuccessInOneChunk: sudo's prompt and the root shell's
// marker read in one piece still give the password once, then the body.
func TestBecomePromptAndSuccessInOneChunk(t *testing.T) {
	_, stdin, bc := Build(testumSudo("id"), "pw")
	var errb bytes.Buffer
	stderr := bc.Stderr(&errb)
	rs := readAll(t, stdin)
	_, _ = stderr.Write([]byte("a" + bc.Prompt() + "b" + bc.Success() + "\nc" + bc.Prompt()))
	if got := rs.all(t); got != "pw\nid\n" {
		t.Fatalf("stdin %q, want the password once then the body", got)
	}
	bc.Flush()
	if errb.String() != "abc"+bc.Prompt() || bc.Refused() {
		t.Fatalf("stderr %q refused %v", errb.String(), bc.Refused())
	}
}

func testumSudo(body string) (spec testum.RunSpec) {
	spec.Sudo = true
	if body != "" {
		spec.Script = &testum.Script{Interpreter: "sh", Body: body}
	} else {
		spec.Command = "id"
	}
	return spec
}

// TestBecomeWithoutPrompt: sudo that asks nothing (NOPASSWD, root, a cached
// timestamp) never gets the password; a command gets EOF.
func TestBecomeWithoutPrompt(t *testing.T) {
	_, stdin, bc := Build(testumSudo(""), "pw")
	var errb bytes.Buffer
	stderr := bc.Stderr(&errb)
	rs := readAll(t, stdin)
	rs.nothing(t, bc, 0)
	writeHalves(t, rs, bc, stderr, bc.Success()+"\nwarn\n", 3, len(bc.Success())+1, 0)
	if got := rs.next(t); got != "<EOF>" {
		t.Fatalf("stdin %q, want EOF and no password", got)
	}
	if errb.String() != "warn\n" || bc.Refused() {
		t.Fatalf("stderr %q refused %v", errb.String(), bc.Refused())
	}
}

// TestBecomeSecondPromptIsARefusal: the second prompt ends stdin.
func TestBecomeSecondPromptIsARefusal(t *testing.T) {
	_, stdin, bc := Build(testumSudo("id"), "wrong")
	var errb bytes.Buffer
	stderr := bc.Stderr(&errb)
	rs := readAll(t, stdin)
	writeSplit(t, stderr, bc.Prompt(), 4)
	if got := rs.next(t); got != "wrong\n" {
		t.Fatalf("stdin %q", got)
	}
	writeSplit(t, stderr, "Sorry, try again.\n"+bc.Prompt(), 20)
	if got := rs.next(t); got != "<EOF>" || !bc.Refused() {
		t.Fatalf("stdin %q refused %v", got, bc.Refused())
	}
	if strings.Contains(errb.String(), bc.Prompt()) || errb.String() != "Sorry, try again.\n" {
		t.Fatalf("stderr %q", errb.String())
	}
}

// TestBecomeEndsWithTheCommand: a Read still waiting ends when the command
// ends, and what was held back as a possible marker start is passed on.
func TestBecomeEndsWithTheCommand(t *testing.T) {
	// A tail that may begin either token (they share a prefix), and one that
	// begins only the success marker.
	for _, n := range []int{7, len("testum-sudo-o")} {
		_, stdin, bc := Build(testumSudo("id"), "pw")
		var out, errb bytes.Buffer
		stdout, stderr := bc.Stdout(&out), bc.Stderr(&errb)
		rs := readAll(t, stdin)
		_, _ = stdout.Write([]byte("x" + bc.Success()[:5]))
		held := bc.Prompt()[:n]
		if n > 7 {
			held = bc.Success()[:n]
		}
		_, _ = stderr.Write([]byte("sudo: not in sudoers\n" + held))
		bc.CommandEnded()
		if got := rs.next(t); got != "<EOF>" {
			t.Fatalf("stdin %q", got)
		}
		bc.Flush()
		if out.String() != "x"+bc.Success()[:5] || errb.String() != "sudo: not in sudoers\n"+held {
			t.Fatalf("stdout %q stderr %q", out.String(), errb.String())
		}
	}
}

func TestPartialTail(t *testing.T) {
	for _, tc := range []struct {
		b, token string
		want     int
	}{
		{"", "abc", 0}, {"xyz", "abc", 0}, {"xa", "abc", 1}, {"xab", "abc", 2},
		{"abc", "abc", 0}, // a whole token is not a partial one
		{"aab", "aabx", 3}, {"ab", "aab", 0}, {"aa", "aab", 2},
	} {
		if got := PartialTail([]byte(tc.b), []byte(tc.token)); got != tc.want {
			t.Errorf("PartialTail(%q, %q) = %d, want %d", tc.b, tc.token, got, tc.want)
		}
	}
}
