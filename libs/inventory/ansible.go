package inventory

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/testum/testum/libs/hostexpr"
)

// ansibleVar is one inventory variable.
type ansibleVar struct {
	value  string
	scalar bool // false for lists and mappings (YAML), which never become labels
	line   int
}

type ansibleGroup struct {
	vars     map[string]ansibleVar
	children map[string]bool
	hosts    map[string]bool
}

type ansibleHost struct {
	line int
	port int // from a "host:port" pattern
	vars map[string]ansibleVar
}

// ansibleModel is the inventory graph shared by the INI and YAML parsers.
type ansibleModel struct {
	groups   map[string]*ansibleGroup
	hosts    map[string]*ansibleHost
	order    []string
	problems []Problem
	expanded int // host names produced by every pattern so far, repeats included
}

// maxExpanded bounds the names all host patterns of one inventory produce
// together: a line repeating "x[1:99999]" would otherwise cost an expansion
// each, however many of its hosts exist already.
const maxExpanded = 2 * MaxEntries

func newModel() *ansibleModel {
	return &ansibleModel{groups: map[string]*ansibleGroup{}, hosts: map[string]*ansibleHost{}}
}

func (m *ansibleModel) problem(line int, name, format string, args ...any) {
	m.problems = append(m.problems, Problem{Line: line, Name: name, Reason: fmt.Sprintf(format, args...)})
}

func (m *ansibleModel) group(name string) *ansibleGroup {
	g := m.groups[name]
	if g == nil {
		g = &ansibleGroup{vars: map[string]ansibleVar{}, children: map[string]bool{}, hosts: map[string]bool{}}
		m.groups[name] = g
	}
	return g
}

// addHosts expands an Ansible host pattern ("web[01:03].example.org",
// "db1:2222") and adds the hosts to group with vars. It reports whether the
// pattern was valid.
func (m *ansibleModel) addHosts(line int, group, pattern string, vars map[string]ansibleVar) bool {
	if m.expanded > maxExpanded {
		return false // reported once, below
	}
	names, port, err := expandAnsible(pattern)
	if err != nil {
		m.problem(line, pattern, "%v", err)
		return false
	}
	if m.expanded += len(names); m.expanded > maxExpanded {
		m.problem(line, pattern, "host patterns expand to more than %d names in all; this line and the rest ignored", maxExpanded)
		return false
	}
	if len(m.hosts)+len(names) > MaxEntries {
		m.problem(line, pattern, "more than %d hosts in inventory; rest ignored", MaxEntries)
		return false
	}
	g := m.group(group)
	for _, n := range names {
		h := m.hosts[n]
		if h == nil {
			h = &ansibleHost{line: line, vars: map[string]ansibleVar{}}
			m.hosts[n] = h
			m.order = append(m.order, n)
		}
		if port != 0 {
			h.port = port
		}
		for k, v := range vars { // later definitions override earlier ones, as in Ansible
			h.vars[k] = v
		}
		g.hosts[n] = true
	}
	return true
}

var (
	ansibleRange = regexp.MustCompile(`\[([^\[\]]*)\]`)
	numericRange = regexp.MustCompile(`^([0-9]+):([0-9]+)(?::([0-9]+))?$`)
)

// expandAnsible expands Ansible's "[01:03]" / "[1:9:2]" ranges and strips a
// trailing ":port".
func expandAnsible(pattern string) ([]string, int, error) {
	port := 0
	if i := strings.LastIndex(pattern, ":"); i > strings.LastIndex(pattern, "]") && strings.Count(pattern, ":")-strings.Count(bracketed(pattern), ":") == 1 {
		p, err := parsePort(pattern[i+1:])
		if err != nil {
			return nil, 0, err
		}
		pattern, port = pattern[:i], p
	}
	if pattern == "" {
		return nil, 0, fmt.Errorf("empty host name")
	}
	if !strings.ContainsAny(pattern, "[]") {
		if strings.ContainsAny(pattern, ",!") {
			return nil, 0, fmt.Errorf("invalid host name %q", pattern)
		}
		return []string{pattern}, port, nil
	}
	var convErr error
	expr := ansibleRange.ReplaceAllStringFunc(pattern, func(s string) string {
		m := numericRange.FindStringSubmatch(s[1 : len(s)-1])
		if m == nil {
			if convErr == nil {
				convErr = fmt.Errorf("range %s is not a numeric [start:end] or [start:end:step] range", s)
			}
			return s
		}
		out := "[" + m[1] + "-" + m[2]
		if m[3] != "" {
			out += "/" + m[3]
		}
		return out + "]"
	})
	if convErr != nil {
		return nil, 0, convErr
	}
	if strings.Contains(expr, ",") {
		return nil, 0, fmt.Errorf("invalid host name %q", pattern)
	}
	names, err := hostexpr.Expand(expr)
	if err != nil {
		return nil, 0, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "hostexpr: "))
	}
	return names, port, nil
}

// bracketed returns the parts of s inside brackets, concatenated.
func bracketed(s string) string {
	return strings.Join(ansibleRange.FindAllString(s, -1), "")
}

// entries resolves group membership and variables into entries.
//
// A host belongs to its groups and, transitively, to their parents. Variables
// apply with Ansible's precedence: "all" group vars, then other groups from
// the shallowest to the deepest (ties by name), then host vars.
func (m *ansibleModel) entries() Result {
	parents := map[string][]string{}
	for name, g := range m.groups {
		for c := range g.children {
			m.group(c)
			parents[c] = append(parents[c], name)
		}
	}
	// depth: longest path from a root, bounded by the number of groups (cycles).
	depth := map[string]int{}
	var depthOf func(string, int) int
	depthOf = func(g string, budget int) int {
		if d, ok := depth[g]; ok || budget == 0 {
			return d
		}
		d := 0
		for _, p := range parents[g] {
			if p == g {
				continue
			}
			d = max(d, depthOf(p, budget-1)+1)
		}
		depth[g] = d
		return d
	}
	for g := range m.groups {
		depthOf(g, len(m.groups))
	}

	var entries []Entry
	for _, name := range m.order {
		h := m.hosts[name]
		// Collect direct and ancestor groups, breadth first with a visited set.
		member := map[string]bool{}
		var queue []string
		for g, grp := range m.groups {
			if grp.hosts[name] {
				queue = append(queue, g)
			}
		}
		for len(queue) > 0 {
			g := queue[0]
			queue = queue[1:]
			if member[g] {
				continue
			}
			member[g] = true
			queue = append(queue, parents[g]...)
		}
		member["all"] = true
		groups := make([]string, 0, len(member))
		for g := range member {
			groups = append(groups, g)
		}
		slices.SortFunc(groups, func(a, b string) int {
			da, db := depth[a], depth[b]
			if a == "all" {
				da = -1
			}
			if b == "all" {
				db = -1
			}
			if da != db {
				return da - db
			}
			return strings.Compare(a, b)
		})
		vars := map[string]ansibleVar{}
		for _, g := range groups {
			if grp := m.groups[g]; grp != nil {
				for k, v := range grp.vars {
					vars[k] = v
				}
			}
		}
		for k, v := range h.vars {
			vars[k] = v
		}

		e := Entry{Name: name, Host: name, Port: h.port, Line: h.line, Labels: map[string]string{}, Vars: map[string]string{}}
		for k, v := range vars {
			// Only variables testum understands are used; the others are
			// kept aside, for labels the import asks for by name.
			if !strings.HasPrefix(k, "ansible_") && v.scalar {
				e.Vars[k] = v.value
			}
		}
		// A setting spelled two ways (ansible_ssh_user and ansible_user)
		// takes the value of the name listed last, wherever each is set, as
		// for the password below: the result does not depend on map order.
		ok := true
		for _, k := range []string{"ansible_ssh_port", "ansible_port"} {
			v, set := vars[k]
			if !set {
				continue
			}
			p, err := parsePort(v.value)
			if err != nil {
				m.problem(v.line, name, "%s: %v; entry rejected", k, err)
				ok = false
			}
			e.Port = p
		}
		if !ok {
			continue
		}
		for field, names := range map[*string][]string{
			&e.Host:         {"ansible_ssh_host", "ansible_host"},
			&e.User:         {"ansible_ssh_user", "ansible_user"},
			&e.IdentityFile: {"ansible_ssh_private_key_file", "ansible_private_key_file"},
		} {
			for _, k := range names {
				if v, set := vars[k]; set {
					*field = v.value
				}
			}
		}
		for _, k := range []string{"ansible_ssh_pass", "ansible_ssh_password", "ansible_password"} { // last wins
			if v, set := vars[k]; set && v.scalar && v.value != "" {
				e.Password = v.value
			}
		}
		e.Jump = jumpFromArgs(vars["ansible_ssh_common_args"].value)
		if e.Jump == "" {
			e.Jump = jumpFromArgs(vars["ansible_ssh_extra_args"].value)
		}
		grouped := false
		for g := range member {
			if g != "all" && g != "ungrouped" {
				grouped = true
				e.Labels[g] = "true"
			}
		}
		if !grouped {
			e.Labels["ungrouped"] = "true"
		}
		entries = append(entries, e)
	}
	return finish(entries, m.problems)
}

var jumpPattern = regexp.MustCompile(`(?i)(?:-J\s*|ProxyJump[=\s]\s*)("[^"]*"|'[^']*'|\S+)`)

// jumpFromArgs finds the first ProxyJump hop in ssh arguments such as
// "-J bastion" or "-o ProxyJump=user@bastion:2222".
func jumpFromArgs(args string) string {
	m := jumpPattern.FindStringSubmatch(args)
	if m == nil {
		return ""
	}
	return firstHop(strings.Trim(m[1], `"'`))
}

// ParseAnsibleINI parses an Ansible inventory in INI format: [group],
// [group:vars] and [group:children] sections, host lines
// "name key=value key2='quoted value'" with ranges such as
// "web[01:03].example.org" and an optional ":port". Hosts before any section
// are "ungrouped". A host listed in several groups becomes one entry with
// every group as a label.
func ParseAnsibleINI(r io.Reader) (Result, error) {
	m := newModel()
	section, kind := "ungrouped", "hosts"
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, maxLine)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' && strings.HasSuffix(line, "]") && !strings.Contains(line[1:len(line)-1], "[") {
			name, suffix, _ := strings.Cut(strings.TrimSpace(line[1:len(line)-1]), ":")
			switch {
			case name == "" || strings.ContainsAny(name, " \t"):
				m.problem(lineNo, "", "invalid section header %s; section skipped", line)
				section, kind = "", "skip"
			case suffix == "" || suffix == "hosts":
				section, kind = name, "hosts"
				m.group(name)
			case suffix == "vars" || suffix == "children":
				section, kind = name, suffix
				m.group(name)
			default:
				m.problem(lineNo, name, "unknown section type %q (want vars or children); section skipped", suffix)
				section, kind = "", "skip"
			}
			continue
		}
		switch kind {
		case "skip":
		case "children":
			if strings.ContainsAny(line, " \t=") {
				m.problem(lineNo, section, "invalid child group name %q", line)
				continue
			}
			m.group(section).children[line] = true
		case "vars":
			k, v, found := strings.Cut(line, "=")
			k = strings.TrimSpace(k)
			if !found || k == "" || strings.ContainsAny(k, " \t") {
				m.problem(lineNo, section, "variable line %q is not key=value", line)
				continue
			}
			val, err := unquote(strings.TrimSpace(v))
			if err != nil {
				m.problem(lineNo, section, "variable %s: %v", k, err)
				continue
			}
			m.group(section).vars[k] = ansibleVar{value: val, scalar: true, line: lineNo}
		default:
			tokens, err := splitINIHostLine(line)
			if err != nil {
				m.problem(lineNo, "", "%v; line skipped", err)
				continue
			}
			vars := map[string]ansibleVar{}
			bad := false
			for _, t := range tokens[1:] {
				k, v, found := strings.Cut(t, "=")
				if !found || k == "" {
					m.problem(lineNo, tokens[0], "host variable %q is not key=value; line skipped", t)
					bad = true
					break
				}
				vars[k] = ansibleVar{value: v, scalar: true, line: lineNo}
			}
			if !bad {
				m.addHosts(lineNo, section, tokens[0], vars)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return Result{}, readErr(lineNo+1, err)
	}
	return m.entries(), nil
}

// splitINIHostLine splits a host line into whitespace-separated tokens,
// removing single or double quotes (key="a b" gives key=a b). A '#' outside
// quotes starts a comment.
func splitINIHostLine(line string) ([]string, error) {
	var tokens []string
	var b strings.Builder
	var quote byte
	has := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				b.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote, has = c, true
		case c == '#' && !has:
			i = len(line) // comment
		case c == ' ' || c == '\t':
			if has {
				tokens = append(tokens, b.String())
				b.Reset()
				has = false
			}
		default:
			b.WriteByte(c)
			has = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if has {
		tokens = append(tokens, b.String())
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("empty host line")
	}
	return tokens, nil
}

// unquote removes matching surrounding quotes from a vars-section value.
func unquote(v string) (string, error) {
	if v == "" || (v[0] != '"' && v[0] != '\'') {
		return v, nil
	}
	if len(v) < 2 || v[len(v)-1] != v[0] {
		return "", fmt.Errorf("unterminated %c quote", v[0])
	}
	return v[1 : len(v)-1], nil
}

// ParseAnsibleYAML parses an Ansible inventory in YAML format:
//
//	all:
//	  vars: {...}
//	  hosts: {name: {var: value}, ...}
//	  children: {group: {hosts: ..., vars: ..., children: ...}}
//
// Top-level keys other than "all" are groups as well. Host names may use
// ranges ("web[01:03]"). Variables that are lists or mappings are ignored
// for labels.
func ParseAnsibleYAML(r io.Reader) (Result, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return Result{}, fmt.Errorf("inventory: reading input: %w", err)
	}
	m := newModel()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		m.problem(0, "", "invalid YAML: %v", err)
		return m.entries(), nil
	}
	if len(doc.Content) == 0 {
		return m.entries(), nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		m.problem(root.Line, "", "top level is not a mapping of groups")
		return m.entries(), nil
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		m.yamlGroup(root.Content[i].Value, root.Content[i+1], 0)
	}
	return m.entries(), nil
}

// maxGroupDepth bounds the nesting of children in YAML inventories.
const maxGroupDepth = 100

func (m *ansibleModel) yamlGroup(name string, n *yaml.Node, depth int) {
	m.group(name)
	if n.Kind == yaml.ScalarNode && (n.Tag == "!!null" || n.Value == "") {
		return // "group:" with nothing below
	}
	if n.Kind != yaml.MappingNode {
		m.problem(n.Line, name, "group must be a mapping with hosts, vars or children")
		return
	}
	if depth > maxGroupDepth {
		m.problem(n.Line, name, "groups nested more than %d levels deep; ignored", maxGroupDepth)
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		switch key.Value {
		case "hosts":
			if isNull(val) {
				continue
			}
			if val.Kind != yaml.MappingNode {
				m.problem(val.Line, name, "hosts must be a mapping of host names")
				continue
			}
			for j := 0; j+1 < len(val.Content); j += 2 {
				hn, hv := val.Content[j], val.Content[j+1]
				vars, ok := m.yamlVars(hn.Value, hv)
				if ok {
					m.addHosts(hn.Line, name, hn.Value, vars)
				}
			}
		case "vars":
			vars, _ := m.yamlVars(name, val)
			for k, v := range vars {
				m.group(name).vars[k] = v
			}
		case "children":
			if isNull(val) {
				continue
			}
			if val.Kind != yaml.MappingNode {
				m.problem(val.Line, name, "children must be a mapping of group names")
				continue
			}
			for j := 0; j+1 < len(val.Content); j += 2 {
				child := val.Content[j].Value
				m.group(name).children[child] = true
				m.yamlGroup(child, val.Content[j+1], depth+1)
			}
		default:
			m.problem(key.Line, name, "unknown key %q (want hosts, vars or children)", key.Value)
		}
	}
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// yamlVars reads a mapping of variables; null means none.
func (m *ansibleModel) yamlVars(owner string, n *yaml.Node) (map[string]ansibleVar, bool) {
	vars := map[string]ansibleVar{}
	if isNull(n) {
		return vars, true
	}
	if n.Kind != yaml.MappingNode {
		m.problem(n.Line, owner, "variables must be a mapping")
		return nil, false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "" {
			m.problem(k.Line, owner, "variable with an empty name")
			continue
		}
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		av := ansibleVar{line: k.Line, scalar: v.Kind == yaml.ScalarNode && !isNull(v)}
		if av.scalar {
			av.value = v.Value
		}
		vars[k.Value] = av
	}
	return vars, true
}
