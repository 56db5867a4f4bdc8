package inventory_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/testum/testum/libs/inventory"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ from the parsers' output")

// formats maps an input's extension under testdata/ to the format it is
// parsed as.
var formats = map[string]string{
	".ssh_config": inventory.FormatSSHConfig,
	".ini":        inventory.FormatAnsibleINI,
	".yaml":       inventory.FormatAnsibleYAML,
}

// golden is what a golden file holds: the parse in the input's own format,
// and the format Detect picks for it.
type golden struct {
	Detected string
	Result   inventory.Result
}

// TestGolden parses every input under testdata/ in the format its
// extension names and compares the result with NAME.golden.json. Run with
// -update to rewrite the golden files, then review the diff.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, in := range inputs {
		format, ok := formats[filepath.Ext(in)]
		if !ok {
			continue
		}
		seen[format]++
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			res, err := inventory.Parse(format, bytes.NewReader(data))
			if err != nil {
				t.Fatalf("Parse(%s): %v", format, err)
			}
			// Detection and explicit parsing agree whenever Detect picks the
			// input's own format.
			detected := inventory.Detect(data)
			if detected == format {
				auto, err := inventory.Parse("", bytes.NewReader(data))
				if err != nil {
					t.Fatalf("Parse(detect): %v", err)
				}
				if a, b := mustJSON(t, auto), mustJSON(t, res); !bytes.Equal(a, b) {
					t.Errorf("Parse with detection differs from Parse(%s):\n%s\nvs\n%s", format, a, b)
				}
			}
			got := mustJSON(t, golden{Detected: detected, Result: res})
			path := goldenPath(in)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden ./libs/inventory/ -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the parse of %s (rerun with -update and review the diff):\ngot:\n%s", path, in, got)
			}
		})
	}
	for _, f := range formats {
		if seen[f] == 0 {
			t.Errorf("no input under testdata/ for format %s", f)
		}
	}
}

// goldenPath is where the golden file of an input lives: basic.ssh_config
// has basic.ssh_config.golden.json.
func goldenPath(input string) string { return input + ".golden.json" }

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// failingReader returns data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestParseErrors: what the parsers return as errors rather than problems —
// an unknown format, input they cannot read, and inputs over their bounds.
func TestParseErrors(t *testing.T) {
	errDisk := errors.New("disk on fire")
	longLine := "web1 " + strings.Repeat("x", 1<<20) + "\n"
	var manyHosts strings.Builder
	manyHosts.WriteString("Host")
	for i := range inventory.MaxEntries + 1 {
		manyHosts.WriteString(" h" + strconv.Itoa(i))
	}
	manyHosts.WriteString("\n")

	cases := []struct {
		name   string
		format string
		input  io.Reader
		want   string // in the error message
		is     error  // matched with errors.Is, if set
	}{
		{"unknown format", "toml", strings.NewReader("a = 1"), `unknown format "toml"`, nil},
		{"ssh_config read error", inventory.FormatSSHConfig, &failingReader{[]byte("Host a\n"), errDisk}, "reading line 2", errDisk},
		{"ini read error", inventory.FormatAnsibleINI, &failingReader{[]byte("[web]\nweb1\n"), errDisk}, "reading line 3", errDisk},
		{"yaml read error", inventory.FormatAnsibleYAML, &failingReader{[]byte("all:\n"), errDisk}, "reading input", errDisk},
		{"detect read error", "", &failingReader{nil, errDisk}, "reading input", errDisk},
		{"ssh_config line too long", inventory.FormatSSHConfig, strings.NewReader("Host a\n" + longLine), "line 2: longer than", nil},
		{"ini line too long", inventory.FormatAnsibleINI, strings.NewReader(longLine), "line 1: longer than", nil},
		{"ssh_config too many hosts", inventory.FormatSSHConfig, strings.NewReader(manyHosts.String()), "more than 100000 hosts", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := inventory.Parse(c.format, c.input)
			if err == nil {
				t.Fatalf("no error; result %+v", res)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %q does not wrap %q", err, c.is)
			}
			if len(res.Entries) != 0 || len(res.Problems) != 0 {
				t.Errorf("an error came with a result: %+v", res)
			}
		})
	}
}

// TestAnsibleAliasesResolveInFixedOrder: a setting spelled two ways takes
// the value of the same name on every parse, not whichever a map yields
// first.
func TestAnsibleAliasesResolveInFixedOrder(t *testing.T) {
	ini := `[web]
web1 ansible_ssh_user=old ansible_ssh_host=192.0.2.1 ansible_ssh_port=2201 ansible_ssh_private_key_file=/old

[web:vars]
ansible_user=new
ansible_host=192.0.2.2
ansible_port=2202
ansible_private_key_file=/new
`
	for range 50 {
		res, err := inventory.Parse(inventory.FormatAnsibleINI, strings.NewReader(ini))
		if err != nil || len(res.Entries) != 1 {
			t.Fatalf("%+v, %v", res, err)
		}
		e := res.Entries[0]
		if e.User != "new" || e.Host != "192.0.2.2" || e.Port != 2202 || e.IdentityFile != "/new" {
			t.Fatalf("user %q host %q port %d key %q; want the ansible_* spelling's values", e.User, e.Host, e.Port, e.IdentityFile)
		}
	}
}

// TestAnsibleEmptyHostName: an empty host name is a problem, not an entry.
func TestAnsibleEmptyHostName(t *testing.T) {
	res, err := inventory.Parse(inventory.FormatAnsibleYAML, strings.NewReader("all:\n  hosts:\n    \"\":\n    ok:\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Entries) != 1 || res.Entries[0].Name != "ok" || len(res.Problems) != 1 || !strings.Contains(res.Problems[0].Reason, "empty host name") {
		t.Fatalf("%+v", res)
	}
}
