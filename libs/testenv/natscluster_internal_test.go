package testenv

import (
	"strings"
	"testing"
)

// TestRequireNATSServerFails: without the nats-server binary, or with one
// of another version than go.mod's, the test fails and says how to install
// it; it is never skipped.
func TestRequireNATSServerFails(t *testing.T) {
	t.Parallel()
	bin := FindNATSServer()
	want := wantNATSServerVersion()
	if want == "" {
		t.Fatal("the test binary does not know the nats-server version of go.mod")
	}
	cases := []struct {
		name, bin, want, msg string
	}{
		{"missing", "", want, "`make deps` installs it"},
		{"other version", bin, "v0.0.1", "go.mod pins v0.0.1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := ended(t, func(tb testing.TB) { requireNATSServer(tb, c.bin, c.want) })
			if o.skipped || !o.failed {
				t.Fatalf("failed=%v skipped=%v (%q), want a failure", o.failed, o.skipped, o.msg)
			}
			if !strings.Contains(o.msg, c.msg) {
				t.Fatalf("message %q does not contain %q", o.msg, c.msg)
			}
		})
	}
	if o := ended(t, func(tb testing.TB) { requireNATSServer(tb, bin, want) }); o.failed || o.skipped {
		t.Fatalf("installed nats-server %s: %q", bin, o.msg)
	}
}
