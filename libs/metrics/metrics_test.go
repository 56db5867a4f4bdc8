package metrics_test

import (
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/testum/testum/libs/metrics"
)

// gathered lists the metric names m exposes.
func gathered(t *testing.T, m *metrics.Metrics) map[string]bool {
	t.Helper()
	fams, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
	}
	return names
}

func TestReadGaugesAreAbsentUntilRead(t *testing.T) {
	m := metrics.New()
	if names := gathered(t, m); names["testum_tasks_pending"] || names["testum_sessions_active"] {
		t.Fatal("read gauges shown without a reader")
	}
	m.ReadTasksPending(func(context.Context) (float64, error) { return 3, nil })
	m.ReadSessionsActive(func(context.Context) (float64, error) { return 0, errors.New("postgres down") })
	names := gathered(t, m)
	if !names["testum_tasks_pending"] || names["testum_sessions_active"] {
		t.Fatalf("pending shown %v, sessions (failed read) shown %v", names["testum_tasks_pending"], names["testum_sessions_active"])
	}
}

// Every metric the Grafana dashboard queries is one that testum defines.
func TestDashboardQueriesDefinedMetrics(t *testing.T) {
	m := metrics.New()
	m.ReadTasksPending(func(context.Context) (float64, error) { return 0, nil })
	m.ReadSessionsActive(func(context.Context) (float64, error) { return 0, nil })
	m.HTTPRequests.WithLabelValues("/healthz", "200") // series by route appear with the first request
	m.HTTPDuration.WithLabelValues("/healthz")
	names := gathered(t, m)
	dash, err := os.ReadFile("../../deploy/grafana/testum.json")
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`\b(?:testum|go|process)_[a-z_]+`).FindAllString(string(dash), -1)
	if len(used) < 15 {
		t.Fatalf("the dashboard queries only %d metrics", len(used))
	}
	for _, name := range used {
		base := name
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if !names[base] {
			t.Errorf("the dashboard queries %s, which testum does not define", name)
		}
	}
}

func TestTokenMatches(t *testing.T) {
	for _, c := range []struct {
		configured, presented string
		want                  bool
	}{
		{"s3cret-token", "s3cret-token", true},
		{"s3cret-token", "s3cret-tokeN", false},
		{"s3cret-token", "s3cret-token ", false},
		{"s3cret-token", "", false},
		{"", "", false}, // no token configured: nothing matches
	} {
		if got := metrics.TokenMatches(c.configured, c.presented); got != c.want {
			t.Errorf("TokenMatches(%q, %q) = %v", c.configured, c.presented, got)
		}
	}
}
