package testenv

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// outcome records how a harness ended a test: Fatal and Skip both stop the
// calling goroutine, as they do on a real *testing.T.
type outcome struct {
	testing.TB
	failed, skipped bool
	msg             string
}

func (o *outcome) Helper() {}

func (o *outcome) Fatal(args ...any) { o.failed, o.msg = true, fmt.Sprint(args...); runtime.Goexit() }
func (o *outcome) Fatalf(format string, args ...any) {
	o.failed, o.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (o *outcome) FailNow()         { o.failed = true; runtime.Goexit() }
func (o *outcome) Skip(args ...any) { o.skipped, o.msg = true, fmt.Sprint(args...); runtime.Goexit() }
func (o *outcome) Skipf(format string, args ...any) {
	o.skipped, o.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (o *outcome) SkipNow() { o.skipped = true; runtime.Goexit() }

// ended runs f with a recording TB on a goroutine of its own.
func ended(t *testing.T, f func(testing.TB)) *outcome {
	o := &outcome{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(o)
	}()
	<-done
	return o
}

// TestRequireSSHDFails: without root or without OpenSSH the test fails and
// says what to do; it is never skipped.
func TestRequireSSHDFails(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		euid   int
		binary string
		want   string
	}{
		{"not root", 1000, sshdBinary, "need root"},
		{"no sshd", 0, "/nonexistent/sbin/sshd", "`make deps` installs it"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := ended(t, func(tb testing.TB) { requireSSHD(tb, c.euid, c.binary) })
			if o.skipped || !o.failed {
				t.Fatalf("failed=%v skipped=%v (%q), want a failure", o.failed, o.skipped, o.msg)
			}
			if !strings.Contains(o.msg, c.want) {
				t.Fatalf("message %q does not contain %q", o.msg, c.want)
			}
		})
	}
	if o := ended(t, func(tb testing.TB) { requireSSHD(tb, 0, sshdBinary) }); o.failed || o.skipped {
		t.Fatalf("root with %s: %q", sshdBinary, o.msg)
	}
}
