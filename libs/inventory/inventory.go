// Package inventory imports fleets from OpenSSH client configuration files
// and Ansible inventories (INI and YAML). Parsing never touches the network
// or the file system: Include directives and key files are reported or
// recorded, not opened.
//
// Malformed lines and entries are reported as Problems and skipped; only
// read errors are returned as errors.
package inventory

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/testum/testum/libs/hostexpr"
)

// MaxEntries bounds the number of entries one inventory may produce.
const MaxEntries = hostexpr.MaxHosts

// maxLine is the longest line accepted by the line-oriented parsers.
const maxLine = 1 << 20

// Entry is one host found in an inventory.
type Entry struct {
	Name         string            // the alias (ssh_config Host pattern, ansible host name)
	Host         string            // HostName / ansible_host; defaults to Name
	Port         int               // 0 = unset (caller defaults to 22)
	User         string            // User / ansible_user
	Jump         string            // first ProxyJump hop: alias or [user@]host[:port]
	Labels       map[string]string // each Ansible group g gives g="true"; never nil
	Vars         map[string]string // scalar Ansible variables other than ansible_*: labels only when asked for (never nil)
	Password     string            // ansible_password / ansible_ssh_pass: the login password, never a label
	IdentityFile string            // IdentityFile / ansible_ssh_private_key_file (path, not read)
	Line         int               // line where the entry was first defined
}

// LooksSecret reports whether a variable's name suggests it holds a secret
// (it contains pass, secret, token or key, in any case): such a variable
// never becomes a label, which every admin can read.
func LooksSecret(name string) bool {
	n := strings.ToLower(name)
	for _, w := range []string{"pass", "secret", "token", "key"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// Problem is a malformed line or entry. Problems are reported, never fatal:
// the rest of the input is still imported.
type Problem struct {
	Line   int    // 1-based line number, 0 if not tied to a line
	Name   string // the host or group concerned, if any
	Reason string // what is wrong, in plain words
}

// String formats the problem as "line N: name: reason".
func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Name != "" {
		fmt.Fprintf(&b, "%s: ", p.Name)
	}
	b.WriteString(p.Reason)
	return b.String()
}

// Result is the outcome of parsing an inventory: entries sorted by name
// (hostexpr.NaturalLess) and problems sorted by line.
type Result struct {
	Entries  []Entry
	Problems []Problem
}

// Formats accepted by Parse.
const (
	FormatSSHConfig   = "ssh_config"
	FormatAnsibleINI  = "ansible_ini"
	FormatAnsibleYAML = "ansible_yaml"
)

// Parse parses r in the given format: "ssh_config", "ansible_ini",
// "ansible_yaml", or "" to detect the format from the content (see Detect).
func Parse(format string, r io.Reader) (Result, error) {
	switch format {
	case FormatSSHConfig:
		return ParseSSHConfig(r)
	case FormatAnsibleINI:
		return ParseAnsibleINI(r)
	case FormatAnsibleYAML:
		return ParseAnsibleYAML(r)
	case "":
		data, err := io.ReadAll(r)
		if err != nil {
			return Result{}, fmt.Errorf("inventory: reading input: %w", err)
		}
		return Parse(Detect(data), bytes.NewReader(data))
	}
	return Result{}, fmt.Errorf("inventory: unknown format %q (want %s, %s, %s or empty to detect)",
		format, FormatSSHConfig, FormatAnsibleINI, FormatAnsibleYAML)
}

var iniSection = regexp.MustCompile(`^\[[^\[\]]+\]$`)

// Detect guesses the format of data: "ansible_yaml" if it parses as a YAML
// mapping with an "all" key or a group holding "hosts"/"children"/"vars";
// "ansible_ini" if it has [group] sections or host lines with key=value
// variables; "ssh_config" otherwise.
func Detect(data []byte) string {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err == nil && len(doc) > 0 {
		if _, ok := doc["all"]; ok {
			return FormatAnsibleYAML
		}
		for k, v := range doc {
			if k == "hosts" || k == "children" {
				return FormatAnsibleYAML
			}
			if m, ok := v.(map[string]any); ok {
				for _, key := range []string{"hosts", "children", "vars"} {
					if _, ok := m[key]; ok {
						return FormatAnsibleYAML
					}
				}
			}
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxLine)
	for n := 0; sc.Scan() && n < 10000; n++ { // a sample is enough to decide
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if iniSection.MatchString(line) {
			return FormatAnsibleINI
		}
		fields := strings.Fields(line)
		kw := strings.ToLower(strings.SplitN(fields[0], "=", 2)[0])
		if sshKeywords[kw] {
			continue
		}
		for _, f := range fields[1:] {
			if k, _, ok := strings.Cut(f, "="); ok && k != "" {
				return FormatAnsibleINI
			}
		}
	}
	return FormatSSHConfig
}

// sshKeywords are the ssh_config keywords used for detection and for
// recognising global options.
var sshKeywords = map[string]bool{
	"host": true, "match": true, "hostname": true, "user": true, "port": true,
	"identityfile": true, "proxyjump": true, "proxycommand": true, "include": true,
	"forwardagent": true, "serveraliveinterval": true, "serveralivecountmax": true,
	"stricthostkeychecking": true, "userknownhostsfile": true, "identitiesonly": true,
	"controlmaster": true, "controlpath": true, "controlpersist": true, "compression": true,
	"loglevel": true, "connecttimeout": true, "addkeystoagent": true, "preferredauthentications": true,
}

// finish sorts entries and problems.
func finish(entries []Entry, problems []Problem) Result {
	slices.SortStableFunc(entries, func(a, b Entry) int {
		switch {
		case hostexpr.NaturalLess(a.Name, b.Name):
			return -1
		case hostexpr.NaturalLess(b.Name, a.Name):
			return 1
		}
		return 0
	})
	slices.SortStableFunc(problems, func(a, b Problem) int { return a.Line - b.Line })
	return Result{Entries: entries, Problems: problems}
}

// parsePort checks a port number.
func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q is not a number between 1 and 65535", s)
	}
	return p, nil
}

// firstHop returns the first hop of a ProxyJump value, or "" for "none".
func firstHop(v string) string {
	hop, _, _ := strings.Cut(strings.TrimSpace(v), ",")
	hop = strings.TrimSpace(hop)
	if strings.EqualFold(hop, "none") {
		return ""
	}
	return strings.TrimPrefix(hop, "ssh://")
}

func readErr(line int, err error) error {
	if err == bufio.ErrTooLong {
		return fmt.Errorf("inventory: line %d: longer than %d bytes", line, maxLine)
	}
	return fmt.Errorf("inventory: reading line %d: %w", line, err)
}
