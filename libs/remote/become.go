package remote

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"sync"
)

// PasswordRefused is the host's error when sudo asked for the platform's
// password a second time: it refused the first.
const PasswordRefused = "sudo: the platform's password was refused"

// Become is the sudo conversation of one command run with the platform's
// password, done the way Ansible's become does it. sudo asks with a prompt
// made up for this command (sudo -S -p), so the password goes to stdin only
// when sudo really asks: a NOPASSWD sudoer, a root login or a cached sudo
// timestamp never read it. The root shell first echoes a success marker,
// and the script body (or the EOF of a command) is held back until it
// appears, so nothing meant for sudo reaches the command. A second prompt
// means the password was refused: stdin then ends, so sudo gives up instead
// of waiting.
//
// sudo prints its prompt on stderr and the root shell echoes the marker on
// stderr too. stdout and stderr are separate SSH streams copied by separate
// goroutines, so only the order within one stream is the order the host
// wrote it: with both markers on stderr, a prompt that comes after the
// success marker was printed by the command (which can read the prompt from
// sudo's command line), not by sudo, and is never answered. Before success
// both markers are removed from stderr; after it stderr is passed on
// untouched, a prompt look-alike included, and stdout is never looked at.
//
// Become is the command's stdin (Read); Stderr wraps the transcript's
// stderr writer; CommandEnded (called by sshx.Run) unblocks a Read still
// waiting when the command ends; Flush passes on what was held back, once
// the command's output is complete.
type Become struct {
	prompt   string
	success  string
	password []byte
	body     io.Reader // the script; nil for a command (EOF after success)

	mu        sync.Mutex
	cond      sync.Cond
	prompts   int
	pending   []byte // password bytes not yet read by the copy to stdin
	succeeded bool
	refused   bool
	ended     bool
	err       cutter // stderr before success: tokens[tokPrompt], tokens[tokSuccess]
	errW      io.Writer
}

// The tokens Become looks for on stderr, by index in its cutter.
const (
	tokPrompt = iota
	tokSuccess
)

func newBecome(password string, body io.Reader) *Become {
	b := &Become{prompt: marker("testum-sudo-prompt-") + ":", success: marker("testum-sudo-ok-"),
		password: []byte(password + "\n"), body: body}
	b.cond.L = &b.mu
	b.err.tokens = [][]byte{tokPrompt: []byte(b.prompt), tokSuccess: []byte(b.success + "\n")}
	return b
}

// marker is prefix followed by 128 random bits in hex: nothing a host
// prints by chance, and no % (sudo expands %-escapes in its prompt).
func marker(prefix string) string {
	var r [16]byte
	if _, err := rand.Read(r[:]); err != nil {
		panic("remote: no randomness for the sudo markers: " + err.Error())
	}
	return prefix + hex.EncodeToString(r[:])
}

// Prompt is the prompt sudo is told to print.
func (b *Become) Prompt() string { return b.prompt }

// Success is the line the root shell prints before the command.
func (b *Become) Success() string { return b.success }

// Refused reports whether sudo asked for the password twice.
func (b *Become) Refused() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.refused
}

// Read gives sudo the password once it asked, then the script once the root
// shell runs; it waits until one of them is due.
func (b *Become) Read(p []byte) (int, error) {
	b.mu.Lock()
	for {
		switch {
		case b.ended || b.refused:
			b.mu.Unlock()
			return 0, io.EOF
		case len(b.pending) > 0:
			n := copy(p, b.pending)
			b.pending = b.pending[n:]
			b.mu.Unlock()
			return n, nil
		case b.succeeded:
			b.mu.Unlock()
			if b.body == nil {
				return 0, io.EOF
			}
			return b.body.Read(p)
		}
		b.cond.Wait()
	}
}

// CommandEnded ends a Read that still waits: the command is gone.
func (b *Become) CommandEnded() {
	b.mu.Lock()
	b.ended = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

// Stdout returns w: the markers are on stderr, so the command's stdout is
// passed on as it comes.
func (b *Become) Stdout(w io.Writer) io.Writer { return w }

// Stderr wraps the command's stderr writer: until the success marker it
// removes sudo's prompts and the marker and answers the first prompt.
func (b *Become) Stderr(w io.Writer) io.Writer {
	b.errW = w
	return writerFunc(b.writeStderr)
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// stderr is written by one goroutine, so the bytes decided under the lock
// can be passed on after it, in order, without blocking Read while the
// transcript applies back pressure.
func (b *Become) writeStderr(p []byte) (int, error) {
	n := len(p)
	var passes [][]byte
	b.mu.Lock()
	for !b.succeeded {
		pass, which, rest := b.err.cut(p)
		passes = append(passes, pass)
		p = rest
		if which < 0 {
			break
		}
		switch which {
		case tokSuccess:
			// From here on stderr is the command's: nothing in it is sudo
			// asking, whatever it looks like.
			b.succeeded = true
		default:
			b.prompts++
			if b.prompts == 1 {
				b.pending = b.password
			} else {
				b.refused = true
				b.pending = nil
			}
		}
		b.cond.Broadcast()
	}
	passes = append(passes, p) // after success: untouched
	b.mu.Unlock()
	return passOn(b.errW, n, passes...)
}

// Flush passes on the bytes held back because they could have begun a
// marker. Call it once no more output comes (after sshx.Run returned).
func (b *Become) Flush() {
	b.mu.Lock()
	held := b.err.held
	b.err.held = nil
	b.mu.Unlock()
	_, _ = passOn(b.errW, 0, held)
}

func passOn(w io.Writer, n int, parts ...[]byte) (int, error) {
	for _, p := range parts {
		if len(p) == 0 || w == nil {
			continue
		}
		if _, err := w.Write(p); err != nil {
			return n, err
		}
	}
	return n, nil
}

// cutter finds the earliest of a few tokens in a stream that arrives in
// chunks split anywhere, holding back only a tail that may be the beginning
// of one of them. No token may be a prefix of another.
type cutter struct {
	tokens [][]byte
	held   []byte
}

// cut looks for the tokens in what is held followed by p. It returns the
// bytes that can be passed on, which token was found first (its index, -1
// for none), and, if one was, the bytes after it (not looked at yet). The
// returned slices are the caller's: p is not retained.
func (c *cutter) cut(p []byte) (pass []byte, which int, rest []byte) {
	buf := make([]byte, 0, len(c.held)+len(p))
	buf = append(append(buf, c.held...), p...)
	c.held = nil
	at, which := -1, -1
	for k, tok := range c.tokens {
		if i := bytes.Index(buf, tok); i >= 0 && (at < 0 || i < at) {
			at, which = i, k
		}
	}
	if which >= 0 {
		return buf[:at], which, buf[at+len(c.tokens[which]):]
	}
	keep := 0
	for _, tok := range c.tokens {
		keep = max(keep, PartialTail(buf, tok))
	}
	c.held = buf[len(buf)-keep:]
	return buf[:len(buf)-keep], -1, nil
}

// PartialTail returns the length of the longest tail of b that is a proper
// prefix of token: the bytes to hold back while more may complete it.
func PartialTail(b, token []byte) int {
	if len(b) == 0 {
		return 0
	}
	last := b[len(b)-1]
	for k := min(len(token)-1, len(b)); k > 0; k-- {
		if token[k-1] == last && bytes.HasSuffix(b, token[:k]) {
			return k
		}
	}
	return 0
}
