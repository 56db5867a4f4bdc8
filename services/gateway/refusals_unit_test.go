package gateway

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestRefusalLogFoldsAndReports(t *testing.T) {
	l := newRefusalLog()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	k := refusalKey{ip: "127.0.0.5", kind: "token"}
	if ok, folded := l.admit(k, t0, "auth.token", "GET /x"); !ok || folded != 0 {
		t.Fatalf("first refusal: %v %d", ok, folded)
	}
	for i := range 7 {
		if ok, _ := l.admit(k, t0.Add(time.Duration(i)*time.Second), "auth.token", "GET /x"); ok {
			t.Fatalf("refusal %d within the window was audited", i+2)
		}
	}
	// Another kind or address is its own spell.
	if ok, _ := l.admit(refusalKey{ip: "127.0.0.5", kind: "csrf"}, t0, "access.denied", "POST /y"); !ok {
		t.Fatal("another kind was folded")
	}
	// After the window, the sweep reports what was folded, once.
	var reported []int
	report := func(_ refusalKey, s *refusalSpell) { reported = append(reported, s.folded) }
	l.mu.Lock()
	l.pruneLocked(t0.Add(refusalWindow), report)
	l.pruneLocked(t0.Add(2*refusalWindow), report)
	l.mu.Unlock()
	if fmt.Sprint(reported) != "[7]" {
		t.Fatalf("reported %v, want [7]", reported)
	}
	// Without a sweep, the next audited entry carries the count.
	l.admit(k, t0.Add(3*refusalWindow), "auth.token", "GET /x")
	l.admit(k, t0.Add(3*refusalWindow+time.Second), "auth.token", "GET /x")
	if ok, folded := l.admit(k, t0.Add(4*refusalWindow), "auth.token", "GET /x"); !ok || folded != 1 {
		t.Fatalf("after a quiet minute: %v %d, want true 1", ok, folded)
	}
}

func TestRefusalLogBounded(t *testing.T) {
	l := newRefusalLog()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range refusalMaxKeys + 50 {
		l.admit(refusalKey{ip: fmt.Sprintf("127.%d.%d.%d", i>>16&255, i>>8&255, i&255), kind: "token"}, t0, "auth.token", "")
	}
	if n := len(l.spells); n > refusalMaxKeys+1 {
		t.Fatalf("%d spells tracked", n)
	}
	if _, ok := l.spells[refusalKey{ip: "(many addresses)", kind: "token"}]; !ok {
		t.Fatal("the overflow does not share one key")
	}
}

func TestParseProxiesAndHops(t *testing.T) {
	ps, err := parseProxies([]string{"127.0.0.1", " 127.0.1.0/24 ", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]bool{"127.0.0.1": true, "127.0.1.77": true, "127.0.2.1": false, "::1": true, "::ffff:127.0.0.1": true} {
		if got := ps.contains(netip.MustParseAddr(s)); got != want {
			t.Errorf("contains(%s) = %v", s, got)
		}
	}
	if _, err := parseProxies([]string{"proxy.example.org"}); err == nil {
		t.Error("a host name was taken as a proxy")
	}
	for s, want := range map[string]string{" 127.0.0.9": "127.0.0.9", "127.0.0.9:4711": "127.0.0.9", "[::1]:443": "::1", "[::1]": "::1", "unknown": ""} {
		a, ok := parseHop(s)
		if got := map[bool]string{true: a.String()}[ok]; got != want {
			t.Errorf("parseHop(%q) = %q, want %q", s, got, want)
		}
	}
}
