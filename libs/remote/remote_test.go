package remote

import (
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/testum/testum/libs/testum"
)

// run executes a built command in a local sh, as the host's login shell would.
func run(t *testing.T, spec testum.RunSpec) string {
	t.Helper()
	if err := Check(spec); err != nil {
		t.Fatal(err)
	}
	cmd, stdin, _ := Build(spec, "")
	c := exec.Command("sh", "-c", cmd)
	if stdin != nil {
		c.Stdin = stdin
	}
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("%q: %v: %s", cmd, err, out)
	}
	return string(out)
}

func TestBuild(t *testing.T) {
	got := run(t, testum.RunSpec{Script: &testum.Script{Interpreter: "sh", Body: `echo "$1|$2|$GREETING|$(pwd)"`,
		Args: []string{"a b", "it's"}}, Env: map[string]string{"GREETING": "hi $USER `x`"}, Dir: "/tmp"})
	if got != "a b|it's|hi $USER `x`|/tmp\n" {
		t.Fatalf("got %q", got)
	}
	if _, err := exec.LookPath("python3"); err == nil {
		got = run(t, testum.RunSpec{Script: &testum.Script{Interpreter: "python3", Body: "import sys, os\nprint(sys.argv[1:], os.environ['X'])",
			Args: []string{"1", "two"}}, Env: map[string]string{"X": "y"}})
		if got != "['1', 'two'] y\n" {
			t.Fatalf("python3: %q", got)
		}
	}
	if got := run(t, testum.RunSpec{Command: "echo $A", Env: map[string]string{"A": "1"}}); got != "1\n" {
		t.Fatalf("command: %q", got)
	}
}

func TestSudoAsksWithItsOwnPrompt(t *testing.T) {
	cmd, stdin, bc := Build(testum.RunSpec{Sudo: true, Script: &testum.Script{Interpreter: "bash", Body: "id -u"}}, "s3cret")
	if bc == nil || stdin != io.Reader(bc) {
		t.Fatalf("no Become for a password sudo: %v", stdin)
	}
	if !strings.HasPrefix(cmd, "sudo -S -p "+Quote(bc.Prompt())+" ") || strings.Contains(cmd, "s3cret") ||
		!strings.Contains(cmd, "echo "+bc.Success()+" >&2") {
		t.Fatalf("cmd %q", cmd)
	}
	_, _, other := Build(testum.RunSpec{Sudo: true, Command: "id"}, "s3cret")
	if other.Prompt() == bc.Prompt() || other.Success() == bc.Success() {
		t.Fatal("markers are not per command")
	}
	if cmd, _, bc := Build(testum.RunSpec{Sudo: true, Command: "id"}, ""); !strings.HasPrefix(cmd, "sudo -n ") || bc != nil {
		t.Fatalf("no password: %q", cmd)
	}
}

func TestCheck(t *testing.T) {
	for name, spec := range map[string]testum.RunSpec{
		"unknown interpreter": {Script: &testum.Script{Interpreter: "cobol", Body: "x"}},
		"empty body":          {Script: &testum.Script{Interpreter: "sh", Body: "  "}},
		"bad env name":        {Command: "x", Env: map[string]string{"1A": "x"}},
		"env with =":          {Command: "x", Env: map[string]string{"A=B": "x"}},
		"dir newline":         {Command: "x", Dir: "/tmp\nrm -rf /"},
	} {
		if Check(spec) == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestQuote(t *testing.T) {
	for _, s := range []string{"", "plain", "a b", "it's", `"$x"`, "\\", "x;y"} {
		out, err := exec.Command("sh", "-c", "printf %s "+Quote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("Quote(%q) = %s → %q %v", s, Quote(s), out, err)
		}
	}
}
