package logstoretest

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// outcome records how StartMinIO ended a test: Fatal and Skip both stop the
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

// TestStartMinIOFailsWithoutMinIO: a missing minio binary fails the test
// and says how to install it; it is never skipped.
func TestStartMinIOFailsWithoutMinIO(t *testing.T) {
	// Nowhere FindMinIO looks has a minio (t.Setenv: not parallel).
	t.Setenv("PATH", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	t.Setenv("GOBIN", "")
	t.Setenv("GOPATH", "")
	if p := FindMinIO(); p != "" {
		t.Fatalf("FindMinIO found %s with an empty environment", p)
	}
	o := &outcome{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		StartMinIO(o)
	}()
	<-done
	if o.skipped || !o.failed {
		t.Fatalf("failed=%v skipped=%v (%q), want a failure", o.failed, o.skipped, o.msg)
	}
	if !strings.Contains(o.msg, "`make deps` installs it") {
		t.Fatalf("message %q does not say how to install minio", o.msg)
	}
}
