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
// timestamp never read it. The root shell first echoes a success marker on
// stdout, and the script body (or the EOF of a command) is held back until
// it appears, so nothing meant for sudo reaches the command. Neither marker
// reaches the transcript. A second prompt means the password was refused:
// stdin then ends, so sudo gives up instead of waiting.
//
// Become is the command's stdin (Read); Stdout and Stderr wrap the
// transcript's writers; CommandEnded (called by sshx.Run) unblocks a Read
// still waiting when the command ends; Flush passes on what the writers
// held back, once the command's output is complete.
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
	out, err  cutter
	outW      io.Writer
	errW      io.Writer
}

func newBecome(password string, body io.Reader) *Become {
	b := &Become{prompt: marker("testum-sudo-prompt-") + ":", success: marker("testum-sudo-ok-"),
		password: []byte(password + "\n"), body: body}
	b.cond.L = &b.mu
	b.out.token = []byte(b.success + "\n")
	b.err.token = []byte(b.prompt)
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

// Stdout wraps the command's stdout writer: it removes the success marker.
func (b *Become) Stdout(w io.Writer) io.Writer {
	b.outW = w
	return writerFunc(b.writeStdout)
}

// Stderr wraps the command's stderr writer: it removes sudo's prompts and
// answers the first one.
func (b *Become) Stderr(w io.Writer) io.Writer {
	b.errW = w
	return writerFunc(b.writeStderr)
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// Each stream is written by one goroutine, so the bytes decided under the
// lock can be passed on after it, in order, without blocking Read while
// the transcript applies back pressure.

func (b *Become) writeStdout(p []byte) (int, error) {
	b.mu.Lock()
	if b.succeeded {
		b.mu.Unlock()
		return passOn(b.outW, len(p), p)
	}
	pass, found, rest := b.out.cut(p)
	if found {
		b.succeeded = true
		b.cond.Broadcast()
	}
	b.mu.Unlock()
	return passOn(b.outW, len(p), pass, rest)
}

func (b *Become) writeStderr(p []byte) (int, error) {
	n := len(p)
	var passes [][]byte
	b.mu.Lock()
	for {
		pass, found, rest := b.err.cut(p)
		passes = append(passes, pass)
		if !found {
			break
		}
		// The prompt is stripped whenever it appears; it only acts before
		// the root shell started (it cannot be asked for after that).
		b.prompts++
		switch {
		case b.succeeded:
		case b.prompts == 1:
			b.pending = b.password
		default:
			b.refused = true
			b.pending = nil
		}
		b.cond.Broadcast()
		p = rest
	}
	b.mu.Unlock()
	return passOn(b.errW, n, passes...)
}

// Flush passes on the bytes held back because they could have begun a
// marker. Call it once no more output comes (after sshx.Run returned).
func (b *Become) Flush() {
	b.mu.Lock()
	out, err := b.out.held, b.err.held
	b.out.held, b.err.held = nil, nil
	b.mu.Unlock()
	_, _ = passOn(b.outW, 0, out)
	_, _ = passOn(b.errW, 0, err)
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

// cutter finds a token in a stream that arrives in chunks split anywhere,
// holding back only a tail that may be the token's beginning.
type cutter struct {
	token []byte
	held  []byte
}

// cut looks for the token in what is held followed by p. It returns the
// bytes that can be passed on, whether the token was found, and, if it
// was, the bytes after it (not looked at yet). The returned slices are the
// caller's: p is not retained.
func (c *cutter) cut(p []byte) (pass []byte, found bool, rest []byte) {
	buf := make([]byte, 0, len(c.held)+len(p))
	buf = append(append(buf, c.held...), p...)
	c.held = nil
	if i := bytes.Index(buf, c.token); i >= 0 {
		return buf[:i], true, buf[i+len(c.token):]
	}
	k := PartialTail(buf, c.token)
	c.held = buf[len(buf)-k:]
	return buf[:len(buf)-k], false, nil
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
