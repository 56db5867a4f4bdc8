// Package remote turns what a run asks for (a command or a script, with
// environment, working directory and sudo) into the command line a host's
// shell runs and what goes to its stdin. Scripts travel over stdin, so no
// file is left on the host and no argument list limit applies.
package remote

import (
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/testum/testum/libs/testum"
)

// interpreters maps a script's interpreter to how it reads a program from
// stdin with arguments after it.
var interpreters = map[string]string{
	"sh":      "sh -s --",
	"bash":    "bash -s --",
	"zsh":     "zsh -s --",
	"python3": "python3 -",
	"python":  "python -",
	"perl":    "perl -",
	"ruby":    "ruby -",
	"node":    "node -",
	"php":     "php --",
}

// Interpreters lists the interpreters a script may name.
func Interpreters() []string {
	out := make([]string, 0, len(interpreters))
	for k := range interpreters {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Check validates the parts of a spec the host's shell will see.
func Check(spec testum.RunSpec) error {
	for k, v := range spec.Environment() {
		if !envName.MatchString(k) {
			return fmt.Errorf("env %q: names are letters, digits and _ and do not start with a digit", k)
		}
		if strings.ContainsRune(v, 0) {
			return fmt.Errorf("env %s: the value contains a NUL byte", k)
		}
	}
	if strings.ContainsRune(spec.Dir, 0) || strings.ContainsAny(spec.Dir, "\n\r") {
		return fmt.Errorf("dir: must be one line")
	}
	if s := spec.Script; s != nil {
		if _, ok := interpreters[s.Interpreter]; !ok {
			return fmt.Errorf("interpreter %q: want one of %s", s.Interpreter, strings.Join(Interpreters(), ", "))
		}
		if strings.TrimSpace(s.Body) == "" {
			return fmt.Errorf("script body is empty")
		}
		for _, a := range s.Args {
			if strings.ContainsRune(a, 0) {
				return fmt.Errorf("script argument contains a NUL byte")
			}
		}
	}
	return nil
}

// Quote makes s one word for a POSIX shell.
func Quote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Build returns the command line and the stdin (nil for none) of a spec.
// When the run asks for sudo and the platform logs in with a password
// (sudoPassword), sudo -S asks with a prompt of its own and the returned
// Become, which is also the stdin, answers it (see Become): the caller
// wraps the command's stderr writer with it. Without a password sudo runs
// non-interactively (-n) and fails clearly if it needs one.
func Build(spec testum.RunSpec, sudoPassword string) (string, io.Reader, *Become) {
	var inner string
	var stdin string
	if s := spec.Script; s != nil {
		inner = interpreters[s.Interpreter]
		for _, a := range s.Args {
			inner += " " + Quote(a)
		}
		stdin = s.Body
		if !strings.HasSuffix(stdin, "\n") {
			stdin += "\n"
		}
	} else {
		inner = spec.Command
	}
	environ := spec.Environment()
	var b strings.Builder
	if spec.Dir != "" {
		b.WriteString("cd " + Quote(spec.Dir) + " || exit 1\n")
	}
	keys := make([]string, 0, len(environ))
	for k := range environ {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString("export " + k + "=" + Quote(environ[k]) + "\n")
	}
	if !spec.Sudo {
		b.WriteString(inner)
		if stdin == "" {
			return b.String(), nil, nil
		}
		return b.String(), strings.NewReader(stdin), nil
	}
	// Under sudo the environment and directory are set inside the root shell.
	var env strings.Builder
	for _, k := range keys {
		env.WriteString(k + "=" + Quote(environ[k]) + " ")
	}
	root := inner
	if spec.Dir != "" {
		root = "cd " + Quote(spec.Dir) + " || exit 1\n" + inner
	}
	if sudoPassword != "" && !strings.ContainsAny(sudoPassword, "\n\r") {
		var body io.Reader
		if stdin != "" {
			body = strings.NewReader(stdin)
		}
		bc := newBecome(sudoPassword, body)
		// On stderr, after sudo's prompt in the same stream (see Become).
		root = "echo " + bc.Success() + " >&2\n" + root
		return "sudo -S -p " + Quote(bc.Prompt()) + " " + env.String() + "sh -c " + Quote(root), bc, bc
	}
	cmd := "sudo -n " + env.String() + "sh -c " + Quote(root)
	if stdin == "" {
		return cmd, nil, nil
	}
	return cmd, strings.NewReader(stdin), nil
}
