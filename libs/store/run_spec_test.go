package store

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/testum/testum/libs/testum"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ from the encoders' output")

// The stored JSON of a run's spec is pinned: rows already in runs.spec
// must read after an upgrade, and what a new release writes must read in
// the one it replaces during a rolling upgrade.
func TestRunSpecStoredJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec testum.RunSpec
	}{
		{"command", testum.RunSpec{Command: "uptime", TimeoutSeconds: 60, Parallelism: 50}},
		{"every_field", testum.RunSpec{
			Script:         &testum.Script{Interpreter: "bash", Body: "echo \"$1\" <&>\n", Args: []string{"a b", "c"}},
			Env:            map[string]string{"MODE": "fast", "A": "1"},
			SecretEnvNames: []string{"TOKEN"},
			Dir:            "/srv/app", Sudo: true, TimeoutSeconds: 30, Parallelism: 5,
			Batch: "25%", MaxFailures: "2", DeadlineSecs: 600, RetryLost: true, OutputCapBytes: 1 << 20,
		}},
		{"script_without_interpreter", testum.RunSpec{Script: &testum.Script{Body: "true"}, Parallelism: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			golden := filepath.Join("testdata", "run_spec", tc.name+".json")
			got, err := encodeRunSpec(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if want = bytes.TrimSuffix(want, []byte("\n")); !bytes.Equal(got, want) {
				t.Errorf("stored spec\n got %s\nwant %s", got, want)
			}
			back, err := decodeRunSpec(want)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, tc.spec) {
				t.Errorf("read back %+v, want %+v", back, tc.spec)
			}
		})
	}
}

// The secret values never reach the stored spec: they are sealed apart.
func TestRunSpecStoredJSONHoldsNoSecret(t *testing.T) {
	got, err := encodeRunSpec(testum.RunSpec{Command: "env", SecretEnv: map[string]string{"TOKEN": "hunter2"}, SecretEnvNames: []string{"TOKEN"}})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(got, []byte("hunter2")) {
		t.Fatalf("a secret value in the stored spec: %s", got)
	}
}
