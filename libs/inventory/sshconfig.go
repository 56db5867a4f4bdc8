package inventory

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"
)

// sshBlock is the global section or one Host block of an ssh_config.
type sshBlock struct {
	patterns []string // nil for the global section
	values   map[string]sshValue
}

type sshValue struct {
	value string
	line  int
}

// matches reports whether the block applies to alias, as OpenSSH does: at
// least one positive pattern matches and no negated pattern does.
func (b *sshBlock) matches(alias string) bool {
	if b.patterns == nil {
		return true
	}
	ok := false
	for _, p := range b.patterns {
		neg := strings.HasPrefix(p, "!")
		hit, err := path.Match(strings.TrimPrefix(p, "!"), alias)
		if err != nil || !hit {
			continue
		}
		if neg {
			return false
		}
		ok = true
	}
	return ok
}

// sshFields are the keywords that map onto Entry fields (lower case).
var sshFields = map[string]bool{"hostname": true, "port": true, "user": true, "proxyjump": true, "identityfile": true}

// ParseSSHConfig parses an OpenSSH client configuration (ssh_config(5)).
//
// Every non-wildcard pattern of a Host line becomes an entry; patterns with
// '*', '?' or '!' only provide values. Values are resolved as OpenSSH does:
// for each alias, the global section and the Host blocks matching it are read
// in file order and the first value obtained for each keyword wins. Match
// blocks are skipped and Include is not followed; both are reported as
// problems. Unknown keywords are ignored. An entry whose Port is not
// 1-65535 is rejected with a problem.
func ParseSSHConfig(r io.Reader) (Result, error) {
	var problems []Problem
	global := &sshBlock{values: map[string]sshValue{}}
	blocks := []*sshBlock{global}
	cur := global
	type alias struct {
		name string
		line int
	}
	var aliases []alias
	seen := map[string]bool{}

	sc := bufio.NewScanner(r)
	sc.Buffer(nil, maxLine)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, rest := splitKeyword(line)
		kw := strings.ToLower(key)
		args, err := splitArgs(rest)
		if err != nil {
			problems = append(problems, Problem{Line: lineNo, Reason: fmt.Sprintf("%s: %v", key, err)})
			continue
		}
		if kw == "" || len(args) == 0 {
			problems = append(problems, Problem{Line: lineNo, Reason: fmt.Sprintf("keyword %q has no value", key)})
			if kw == "host" || kw == "match" {
				cur = nil // ignore the block's body rather than leak it into the previous one
			}
			continue
		}
		switch kw {
		case "host":
			cur = &sshBlock{patterns: args, values: map[string]sshValue{}}
			blocks = append(blocks, cur)
			for _, p := range args {
				if strings.ContainsAny(p, "*?!") || seen[p] {
					continue
				}
				if len(aliases) >= MaxEntries {
					return Result{}, fmt.Errorf("inventory: line %d: more than %d hosts", lineNo, MaxEntries)
				}
				seen[p] = true
				aliases = append(aliases, alias{p, lineNo})
			}
		case "match":
			problems = append(problems, Problem{Line: lineNo, Reason: "Match blocks are not supported; block skipped"})
			cur = nil
		case "include":
			problems = append(problems, Problem{Line: lineNo, Reason: fmt.Sprintf("Include %s is not followed; import that file separately", strings.Join(args, " "))})
		default:
			if cur == nil || !sshFields[kw] {
				continue
			}
			if _, set := cur.values[kw]; !set { // first value wins, even within a block
				v := args[0]
				if kw == "proxyjump" {
					v = strings.Join(args, ",")
				}
				cur.values[kw] = sshValue{v, lineNo}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return Result{}, readErr(lineNo+1, err)
	}

	var entries []Entry
	for _, a := range aliases {
		e := Entry{Name: a.name, Line: a.line, Labels: map[string]string{}, Vars: map[string]string{}}
		got := map[string]sshValue{}
		for _, b := range blocks {
			if !b.matches(a.name) {
				continue
			}
			for k, v := range b.values {
				if _, ok := got[k]; !ok {
					got[k] = v
				}
			}
		}
		if v, ok := got["port"]; ok {
			p, err := parsePort(v.value)
			if err != nil {
				problems = append(problems, Problem{Line: v.line, Name: a.name, Reason: err.Error() + "; entry rejected"})
				continue
			}
			e.Port = p
		}
		e.Host = a.name
		if v, ok := got["hostname"]; ok {
			e.Host = strings.ReplaceAll(v.value, "%h", a.name)
		}
		e.User = got["user"].value
		e.Jump = firstHop(got["proxyjump"].value)
		e.IdentityFile = got["identityfile"].value
		entries = append(entries, e)
	}
	return finish(entries, problems), nil
}

// splitKeyword splits "Key value", "Key=value" or "Key = value".
func splitKeyword(line string) (key, rest string) {
	i := strings.IndexAny(line, " \t=")
	if i < 0 {
		return line, ""
	}
	key, rest = line[:i], strings.TrimLeft(line[i:], " \t")
	rest = strings.TrimPrefix(rest, "=")
	return key, strings.TrimSpace(rest)
}

// splitArgs splits whitespace-separated arguments, honouring double quotes.
func splitArgs(s string) ([]string, error) {
	var args []string
	var b strings.Builder
	inQuote, has := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			inQuote = !inQuote
			has = true
		case !inQuote && (c == ' ' || c == '\t'):
			if has {
				args = append(args, b.String())
				b.Reset()
				has = false
			}
		default:
			b.WriteByte(c)
			has = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote")
	}
	if has {
		args = append(args, b.String())
	}
	return args, nil
}
