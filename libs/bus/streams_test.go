package bus

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// serverView is a stream config as the server reports it: defaults filled
// in (-1 for no limit).
func serverView(c jetstream.StreamConfig) jetstream.StreamConfig {
	if c.MaxBytes == 0 {
		c.MaxBytes = -1
	}
	if c.MaxMsgSize == 0 {
		c.MaxMsgSize = -1
	}
	c.MaxMsgs, c.MaxMsgsPerSubject, c.MaxConsumers = -1, -1, -1
	return c
}

func settings(cs []StreamChange) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Setting+" "+c.Have+"→"+c.Want)
	}
	return out
}

// TestPlanStream: what a start changes on an existing stream, what it keeps
// (and logs), and what a migration changes or must refuse.
func TestPlanStream(t *testing.T) {
	t.Parallel()
	cfg := StreamsConfig{}
	if err := cfg.CheckAndSetDefaults(); err != nil {
		t.Fatal(err)
	}
	at := func(r int, i int) jetstream.StreamConfig { return streamConfigs(cfg, r)[i] }
	const runs, output = 0, 2
	with := func(c jetstream.StreamConfig, f func(*jetstream.StreamConfig)) jetstream.StreamConfig {
		c.Subjects = slices.Clone(c.Subjects)
		f(&c)
		return c
	}
	cases := []struct {
		name       string
		have, want jetstream.StreamConfig
		migrate    bool
		apply      []string
		keep       []string
		refused    []string
	}{
		{name: "same", have: serverView(at(3, output)), want: at(3, output)},
		{name: "start keeps R3 of a work queue for R1", have: serverView(at(3, runs)), want: at(1, runs),
			keep: []string{"replicas 3→1"}},
		{name: "start keeps R1 of a work queue for R3", have: serverView(at(1, runs)), want: at(3, runs),
			keep: []string{"replicas 1→3"}},
		{name: "start keeps R3 output and its persist mode for R1", have: serverView(at(3, output)), want: at(1, output),
			keep: []string{"replicas 3→1", "persist mode default→async"}},
		{name: "start raises the output limits",
			have:  serverView(at(3, output)),
			want:  with(at(3, output), func(c *jetstream.StreamConfig) { c.MaxAge, c.MaxBytes = 48*time.Hour, 16<<30 }),
			apply: []string{"max age 24h0m0s→48h0m0s", "max bytes 8589934592→17179869184"}},
		{name: "start keeps larger output limits",
			have: serverView(at(3, output)),
			want: with(at(3, output), func(c *jetstream.StreamConfig) { c.MaxAge, c.MaxBytes = time.Hour, 1<<30 }),
			keep: []string{"max age 24h0m0s→1h0m0s", "max bytes 8589934592→1073741824"}},
		{name: "start keeps an unlimited age",
			have: serverView(with(at(1, output), func(c *jetstream.StreamConfig) { c.MaxAge = 0 })),
			want: at(1, output),
			keep: []string{"max age unlimited→24h0m0s"}},
		{name: "start brings subjects and duplicates to this version",
			have:  serverView(with(at(3, runs), func(c *jetstream.StreamConfig) { c.Subjects, c.Duplicates = []string{"old.>"}, time.Minute })),
			want:  at(3, runs),
			apply: []string{"subjects old.>→testum.run.*", "duplicates window 1m0s→2m0s"}},
		{name: "start raises the max message size of an earlier version's output stream",
			have:  serverView(with(at(1, output), func(c *jetstream.StreamConfig) { c.MaxMsgSize = LegacyChunk + chunkHeadroom })),
			want:  at(1, output),
			apply: []string{"max message size 36864→266240"}},
		{name: "start keeps the max message size when an earlier version asks for less",
			have: serverView(at(1, output)),
			want: with(at(1, output), func(c *jetstream.StreamConfig) { c.MaxMsgSize = LegacyChunk + chunkHeadroom }),
			keep: []string{"max message size 266240→36864"}},
		{name: "migrate lowers a work queue to R1", have: serverView(at(3, runs)), want: at(1, runs), migrate: true,
			apply: []string{"replicas 3→1"}},
		{name: "migrate lowers limits", migrate: true,
			have:  serverView(at(3, output)),
			want:  with(at(3, output), func(c *jetstream.StreamConfig) { c.MaxAge = time.Hour }),
			apply: []string{"max age 24h0m0s→1h0m0s"}},
		{name: "migrate of output R1 to R3 needs a new persist mode", have: serverView(at(1, output)), want: at(3, output), migrate: true,
			apply: []string{"replicas 1→3", "persist mode async→default"}, refused: []string{"persist mode async→default"}},
		{name: "migrate cannot change storage",
			have: serverView(with(at(3, runs), func(c *jetstream.StreamConfig) { c.Storage = jetstream.MemoryStorage })),
			want: at(3, runs), migrate: true,
			apply: []string{"storage Memory→File"}, refused: []string{"storage Memory→File"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := planStream(tc.have, tc.want, tc.migrate)
			if got := settings(p.apply); !slices.Equal(got, tc.apply) {
				t.Errorf("apply %q, want %q", got, tc.apply)
			}
			if got := settings(p.keep); !slices.Equal(got, tc.keep) {
				t.Errorf("keep %q, want %q", got, tc.keep)
			}
			if got := settings(p.refused); !slices.Equal(got, tc.refused) {
				t.Errorf("refused %q, want %q", got, tc.refused)
			}
			// The update changes exactly what is applied and nothing else.
			if again := planStream(p.update, tc.want, tc.migrate); len(again.apply) != 0 {
				t.Errorf("after the update still to apply: %q", settings(again.apply))
			}
			if len(p.apply) == 0 && p.update.Replicas != tc.have.Replicas {
				t.Errorf("update replicas %d, have %d", p.update.Replicas, tc.have.Replicas)
			}
			if p.update.MaxMsgs != tc.have.MaxMsgs {
				t.Errorf("update touched an unmanaged setting: max msgs %d", p.update.MaxMsgs)
			}
		})
	}
}

// TestKeptAttrs: the log line of a kept stream has both values.
func TestKeptAttrs(t *testing.T) {
	t.Parallel()
	got := keptAttrs("TESTUM_RUNS", []StreamChange{{Stream: "TESTUM_RUNS", Setting: "persist mode", Have: "default", Want: "async"}})
	want := []any{"stream", "TESTUM_RUNS", "persist_mode", "default", "configured_persist_mode", "async"}
	if !slices.Equal(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
}
