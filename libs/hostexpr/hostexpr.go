// Package hostexpr expands, folds and matches pdsh/ClusterShell-style host
// expressions such as "web[01-20],db[1,3].example.org,!web05".
//
// An expression is a comma-separated list of terms (commas inside brackets
// belong to the range). A term is a name with zero or more bracket groups,
// each holding comma-separated numbers or ranges "lo-hi" (optionally with a
// step, "lo-hi/step"). Several groups in one term produce their cartesian
// product, leftmost group varying slowest. Zero padding is taken from the
// lower bound: "[01-10]" gives 01..10 while "[8-10]" gives 8, 9, 10.
// A term starting with '!' removes its names from those gathered so far.
package hostexpr

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// MaxHosts is the largest number of names an expression may expand to; a
// larger expansion is an error rather than a memory exhaustion.
const MaxHosts = 100000

// The cost of one expression is bounded, so that a request cannot buy
// minutes of CPU with a few kilobytes: its length, its number of terms, the
// names all its terms produce together (names removed with '!' count too:
// "x[1-99999],!x[1-99999]" repeated would otherwise cost without end), and
// the glob comparisons against known names.
const (
	MaxExprBytes  = 64 << 10 // longest expression, in bytes
	MaxTerms      = 4096     // most comma-separated terms
	MaxNames      = MaxHosts // most names produced by all terms together
	MaxGlobChecks = 1 << 21  // most glob × known-name comparisons in one Match
)

// ErrTooComplex is matched (errors.Is) by every error that reports an
// expression over one of the bounds above.
var ErrTooComplex = errors.New("hostexpr: expression too complex")

// LimitError is an expression over a bound; Bound names it.
type LimitError struct {
	Bound string // "length", "terms", "names", "globs", "hosts"
	Limit int
	msg   string
}

func (e *LimitError) Error() string { return e.msg }

// Is makes every LimitError match ErrTooComplex.
func (e *LimitError) Is(target error) bool { return target == ErrTooComplex }

func limitErr(bound string, limit int, format string, args ...any) error {
	return &LimitError{Bound: bound, Limit: limit, msg: fmt.Sprintf(format, args...)}
}

// budget is what an expression may still spend. ctx is checked every
// checkEvery names, so a cancelled request stops expanding.
type budget struct {
	ctx       context.Context
	names     int // names still allowed
	globs     int // glob comparisons still allowed
	sinceTick int
}

const checkEvery = 4096

func newBudget(ctx context.Context) *budget {
	return &budget{ctx: ctx, names: MaxNames, globs: MaxGlobChecks}
}

// spend takes n names from the budget; term is for the error message.
func (b *budget) spend(term string, n int) error {
	if n > b.names {
		return limitErr("names", MaxNames, "hostexpr: %q: expands to more than %d hosts in all (names removed with '!' count too)", term, MaxNames)
	}
	b.names -= n
	return b.tick(n)
}

// tick checks the context once every checkEvery units of work.
func (b *budget) tick(n int) error {
	b.sinceTick += n
	if b.sinceTick < checkEvery {
		return nil
	}
	b.sinceTick = 0
	if err := b.ctx.Err(); err != nil {
		return fmt.Errorf("hostexpr: expansion stopped: %w", err)
	}
	return nil
}

// maxDigits bounds numeric fields so that arithmetic never overflows.
const maxDigits = 18

// Group is a set of hosts that share an identical key (for example an
// identical command output), as in ClusterShell's gather mode.
type Group struct {
	Key    string   // the shared key
	Hosts  []string // hosts sorted with NaturalLess
	Folded string   // Fold(Hosts), for display
}

// Expand expands an expression into host names, in order, without duplicates.
//
// Terms are applied left to right: a plain term adds its names (names already
// present keep their first position), a term starting with '!' removes its
// names. Whitespace around terms is ignored; an empty term, unbalanced or
// nested brackets, an empty, reversed or non-numeric range, or an expansion
// of more than MaxHosts names is an error naming the offending term.
func Expand(expr string) ([]string, error) {
	return ExpandContext(context.Background(), expr)
}

// ExpandContext is Expand within the bounds of MaxExprBytes, MaxTerms and
// MaxNames, stopping with ctx's error once ctx ends.
func ExpandContext(ctx context.Context, expr string) ([]string, error) {
	terms, err := splitTerms(expr)
	if err != nil {
		return nil, err
	}
	b := newBudget(ctx)
	var acc accumulator
	for _, t := range terms {
		if err := b.tick(checkEvery); err != nil { // every term: a term can be cheap but numerous
			return nil, err
		}
		names, err := expandTerm(t.text, b)
		if err != nil {
			return nil, err
		}
		if t.exclude {
			acc.remove(names)
			continue
		}
		if err := acc.add(t.raw, names); err != nil {
			return nil, err
		}
	}
	return acc.result(), nil
}

// Match resolves an expression against known names (for example platform
// names). Besides the syntax of Expand, a term may be a glob using '*' and
// '?' (path.Match semantics, after bracket ranges are expanded), which adds
// the known names it matches in natural order; "!" globs remove them.
//
// matched lists the known names selected, in the order of the expression's
// expansion. unknown lists the expanded names that are not known, plus any
// glob pattern that matched nothing, so that the caller can report them.
func Match(expr string, known []string) (matched, unknown []string, err error) {
	return MatchContext(context.Background(), expr, known)
}

// MatchContext is Match within the bounds of MaxExprBytes, MaxTerms,
// MaxNames and MaxGlobChecks, stopping with ctx's error once ctx ends.
func MatchContext(ctx context.Context, expr string, known []string) (matched, unknown []string, err error) {
	terms, err := splitTerms(expr)
	if err != nil {
		return nil, nil, err
	}
	isKnown := make(map[string]bool, len(known))
	sortedKnown := make([]string, 0, len(known))
	for _, k := range known {
		if !isKnown[k] {
			isKnown[k] = true
			sortedKnown = append(sortedKnown, k)
		}
	}
	slices.SortFunc(sortedKnown, compareNatural)

	b := newBudget(ctx)
	var acc accumulator
	for _, t := range terms {
		if err := b.tick(checkEvery); err != nil {
			return nil, nil, err
		}
		names, err := expandTerm(t.text, b)
		if err != nil {
			return nil, nil, err
		}
		var resolved []string
		for _, n := range names {
			if !strings.ContainsAny(n, "*?") {
				resolved = append(resolved, n)
				continue
			}
			if len(sortedKnown) > b.globs {
				return nil, nil, limitErr("globs", MaxGlobChecks, "hostexpr: %q: too many glob patterns against %d known names", t.raw, len(sortedKnown))
			}
			b.globs -= len(sortedKnown)
			if err := b.tick(len(sortedKnown)); err != nil {
				return nil, nil, err
			}
			hits, err := globKnown(t.raw, n, sortedKnown)
			if err != nil {
				return nil, nil, err
			}
			if err := b.spend(t.raw, len(hits)); err != nil { // what a glob adds or removes counts too
				return nil, nil, err
			}
			if len(hits) == 0 && !t.exclude {
				unknown = append(unknown, n) // reported, never selected
			}
			resolved = append(resolved, hits...)
			if len(resolved) > MaxHosts {
				return nil, nil, tooMany(t.raw)
			}
		}
		if t.exclude {
			acc.remove(resolved)
			continue
		}
		if err := acc.add(t.raw, resolved); err != nil {
			return nil, nil, err
		}
	}
	for _, n := range acc.result() {
		if isKnown[n] {
			matched = append(matched, n)
		} else {
			unknown = append(unknown, n)
		}
	}
	return matched, unknown, nil
}

// globKnown returns the known names (already in natural order) matching
// pattern.
func globKnown(term, pattern string, known []string) ([]string, error) {
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, fmt.Errorf("hostexpr: %q: bad glob pattern %q", term, pattern)
	}
	var hits []string
	for _, k := range known {
		if ok, _ := path.Match(pattern, k); ok {
			hits = append(hits, k)
		}
	}
	return hits, nil
}

// accumulator applies additions and removals in order and keeps the first
// position of every name.
type accumulator struct {
	order   []string
	present map[string]bool
	count   int
}

func (a *accumulator) add(term string, names []string) error {
	if a.present == nil {
		a.present = make(map[string]bool)
	}
	for _, n := range names {
		if a.present[n] {
			continue
		}
		if a.count >= MaxHosts {
			return tooMany(term)
		}
		a.present[n] = true
		a.count++
		a.order = append(a.order, n)
	}
	// Removed then re-added names leave stale copies in order; compact when
	// they dominate so that order stays bounded by a small multiple of MaxHosts.
	if len(a.order) > 2*MaxHosts {
		a.order = a.result()
	}
	return nil
}

func (a *accumulator) remove(names []string) {
	for _, n := range names {
		if a.present[n] {
			delete(a.present, n)
			a.count--
		}
	}
}

// result returns the present names in first-addition order.
func (a *accumulator) result() []string {
	out := make([]string, 0, a.count)
	seen := make(map[string]bool, a.count)
	for _, n := range a.order {
		if a.present[n] && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

func tooMany(term string) error {
	return limitErr("hosts", MaxHosts, "hostexpr: %q: expands to more than %d hosts", term, MaxHosts)
}

// term is one top-level item of an expression.
type term struct {
	raw     string // as written, trimmed, for error messages
	text    string // without the leading '!'
	exclude bool
}

// splitTerms splits expr on the commas that are outside brackets.
func splitTerms(expr string) ([]term, error) {
	if len(expr) > MaxExprBytes {
		return nil, limitErr("length", MaxExprBytes, "hostexpr: the expression is %d bytes long; at most %d", len(expr), MaxExprBytes)
	}
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(expr); i++ {
		switch expr[i] {
		case '[':
			depth++
		case ']':
			if depth > 0 {
				depth--
			}
		case ',':
			if depth == 0 {
				if len(parts)+1 >= MaxTerms {
					return nil, limitErr("terms", MaxTerms, "hostexpr: the expression has more than %d terms", MaxTerms)
				}
				parts = append(parts, expr[start:i])
				start = i + 1
			}
		}
	}
	parts = append(parts, expr[start:])

	terms := make([]term, 0, len(parts))
	for i, p := range parts {
		raw := strings.TrimSpace(p)
		if raw == "" {
			if len(parts) == 1 {
				return nil, fmt.Errorf("hostexpr: %q: expression is empty", expr)
			}
			return nil, fmt.Errorf("hostexpr: %q: term %d is empty", expr, i+1)
		}
		t := term{raw: raw, text: raw}
		if strings.HasPrefix(raw, "!") {
			t.exclude = true
			t.text = strings.TrimSpace(raw[1:])
			if t.text == "" {
				return nil, fmt.Errorf("hostexpr: %q: nothing to exclude after '!'", raw)
			}
		}
		terms = append(terms, t)
	}
	return terms, nil
}

// expandTerm expands one term (without its '!') into names, leftmost bracket
// group varying slowest. Its names are spent from b before any is built.
func expandTerm(t string, bud *budget) ([]string, error) {
	if i := strings.IndexFunc(t, isSpace); i >= 0 {
		return nil, fmt.Errorf("hostexpr: %q: whitespace inside a host name", t)
	}
	// Split into literal pieces and bracket groups: lits[i] precedes groups[i].
	var lits []string
	var groups [][]string
	total := 1 // the product so far: checked group by group, so that many large groups stop early
	rest := t
	for {
		open := strings.IndexAny(rest, "[]")
		if open < 0 {
			lits = append(lits, rest)
			break
		}
		if rest[open] == ']' {
			return nil, fmt.Errorf("hostexpr: %q: unbalanced brackets: ']' without '['", t)
		}
		end := strings.IndexAny(rest[open+1:], "[]")
		if end < 0 {
			return nil, fmt.Errorf("hostexpr: %q: unbalanced brackets: '[' without ']'", t)
		}
		end += open + 1
		if rest[end] == '[' {
			return nil, fmt.Errorf("hostexpr: %q: nested brackets are not allowed", t)
		}
		values, err := expandGroup(t, rest[open+1:end], min(bud.names, MaxHosts)/total)
		if err != nil {
			return nil, err
		}
		total *= len(values) // each factor ≤ the budget left / total: no overflow
		if total > MaxHosts {
			return nil, tooMany(t)
		}
		lits = append(lits, rest[:open])
		groups = append(groups, values)
		rest = rest[end+1:]
	}

	if err := bud.spend(t, total); err != nil {
		return nil, err
	}
	out := make([]string, 0, total)
	idx := make([]int, len(groups)) // odometer, last group fastest
	var b strings.Builder
	for range total {
		b.Reset()
		for i, g := range groups {
			b.WriteString(lits[i])
			b.WriteString(g[idx[i]])
		}
		b.WriteString(lits[len(groups)])
		out = append(out, b.String())
		for i := len(idx) - 1; i >= 0; i-- {
			idx[i]++
			if idx[i] < len(groups[i]) {
				break
			}
			idx[i] = 0
		}
	}
	return out, nil
}

func isSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }

// expandGroup expands the inside of one bracket group, e.g. "1,3,05-07",
// into at most limit values: more is an error before they are built.
func expandGroup(t, body string, limit int) ([]string, error) {
	if strings.TrimSpace(body) == "" {
		return nil, fmt.Errorf("hostexpr: %q: empty range []", t)
	}
	var out []string
	for item := range strings.SplitSeq(body, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("hostexpr: %q: empty item in [%s]", t, body)
		}
		spec, stepText, hasStep := strings.Cut(item, "/")
		loText, hiText, isRange := strings.Cut(spec, "-")
		lo, err := parseBound(t, loText)
		if err != nil {
			return nil, err
		}
		if !isRange {
			if hasStep {
				return nil, fmt.Errorf("hostexpr: %q: step %q needs a range", t, item)
			}
			out = append(out, loText)
			if len(out) > limit {
				return nil, groupTooLarge(t, limit)
			}
			continue
		}
		hi, err := parseBound(t, hiText)
		if err != nil {
			return nil, err
		}
		if hi < lo {
			return nil, fmt.Errorf("hostexpr: %q: range %s-%s is reversed", t, loText, hiText)
		}
		step := uint64(1)
		if hasStep {
			step, err = strconv.ParseUint(stepText, 10, 32)
			if err != nil || step == 0 {
				return nil, fmt.Errorf("hostexpr: %q: step %q is not a positive number", t, stepText)
			}
		}
		if (hi-lo)/step >= MaxHosts || uint64(len(out))+(hi-lo)/step+1 > MaxHosts {
			return nil, tooMany(t)
		}
		if uint64(len(out))+(hi-lo)/step+1 > uint64(limit) {
			return nil, groupTooLarge(t, limit)
		}
		width := 0
		if len(loText) > 1 && loText[0] == '0' {
			width = len(loText)
		}
		for v := lo; v <= hi; v += step {
			out = append(out, pad(v, width))
		}
	}
	return out, nil
}

// groupTooLarge is a bracket group with more values than the budget left:
// over MaxHosts by itself or with what came before it.
func groupTooLarge(t string, limit int) error {
	if limit >= MaxHosts {
		return tooMany(t)
	}
	return limitErr("names", MaxNames, "hostexpr: %q: expands to more than %d hosts in all (names removed with '!' count too)", t, MaxNames)
}

func parseBound(t, s string) (uint64, error) {
	if s == "" {
		return 0, fmt.Errorf("hostexpr: %q: missing range bound", t)
	}
	if len(s) > maxDigits {
		return 0, fmt.Errorf("hostexpr: %q: range bound %q is too long", t, s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("hostexpr: %q: range bound %q is not a number", t, s)
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

func pad(v uint64, width int) string {
	s := strconv.FormatUint(v, 10)
	if len(s) < width {
		s = strings.Repeat("0", width-len(s)) + s
	}
	return s
}

// Fold returns the compact display form of names, as `dshbak -c` or
// ClusterShell's `nodeset -f` do: names that differ only in their last
// numeric field are folded into one bracket group, keeping zero padding:
// ["web01","web02","web03","web05","db1"] gives "db1,web[01-03,05]".
// Duplicates are dropped and the groups are sorted with NaturalLess on their
// first name. Expand(Fold(names)) yields the same set of names, provided the
// names themselves contain no ',', '[', ']', whitespace or leading '!'.
func Fold(names []string) string {
	type bucket struct {
		prefix, suffix string
		nums           []string
	}
	buckets := map[[2]string]*bucket{}
	var plain []string
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		start, end := lastNumber(n)
		if start < 0 {
			plain = append(plain, n)
			continue
		}
		k := [2]string{n[:start], n[end:]}
		b := buckets[k]
		if b == nil {
			b = &bucket{prefix: k[0], suffix: k[1]}
			buckets[k] = b
		}
		b.nums = append(b.nums, n[start:end])
	}

	type folded struct{ first, text string }
	out := make([]folded, 0, len(plain)+len(buckets))
	for _, p := range plain {
		out = append(out, folded{p, p})
	}
	for _, b := range buckets {
		slices.SortFunc(b.nums, compareNatural)
		first := b.prefix + b.nums[0] + b.suffix
		if len(b.nums) == 1 {
			out = append(out, folded{first, first})
			continue
		}
		out = append(out, folded{first, b.prefix + "[" + foldNumbers(b.nums) + "]" + b.suffix})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].first != out[j].first {
			return NaturalLess(out[i].first, out[j].first)
		}
		return out[i].text < out[j].text
	})
	texts := make([]string, len(out))
	for i, f := range out {
		texts[i] = f.text
	}
	return strings.Join(texts, ",")
}

// lastNumber returns the bounds of the last run of digits in s, or -1, -1 if
// there is none or it is too long to be treated as a number.
func lastNumber(s string) (start, end int) {
	end = len(s)
	for end > 0 && !isDigit(s[end-1]) {
		end--
	}
	if end == 0 {
		return -1, -1
	}
	start = end
	for start > 0 && isDigit(s[start-1]) {
		start--
	}
	if end-start > maxDigits {
		return -1, -1
	}
	return start, end
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// foldNumbers folds numeric strings (sorted naturally, distinct) into range
// items such that expanding each item gives back exactly those strings.
func foldNumbers(nums []string) string {
	left := make(map[string]bool, len(nums))
	for _, n := range nums {
		left[n] = true
	}
	var items []string
	for _, n := range nums {
		if !left[n] {
			continue // consumed by an earlier run
		}
		delete(left, n)
		width := 0
		if len(n) > 1 && n[0] == '0' {
			width = len(n)
		}
		v, _ := strconv.ParseUint(n, 10, 64)
		last := n
		for range len(nums) { // a run cannot be longer than the input
			next := pad(v+1, width)
			if !left[next] {
				break
			}
			delete(left, next)
			v++
			last = next
		}
		if last == n {
			items = append(items, n)
		} else {
			items = append(items, n+"-"+last)
		}
	}
	return strings.Join(items, ",")
}

// NaturalLess reports whether a sorts before b in natural order: runs of
// digits compare by numeric value, so "web2" sorts before "web10". Names equal
// except for zero padding sort with the less padded first ("web1" < "web01").
func NaturalLess(a, b string) bool { return compareNatural(a, b) < 0 }

func compareNatural(a, b string) int {
	i, j := 0, 0
	padding := 0 // first difference in zero padding, used as a tie-breaker
	for i < len(a) && j < len(b) {
		ca, cb := a[i], b[j]
		if !isDigit(ca) || !isDigit(cb) {
			if ca != cb {
				if ca < cb {
					return -1
				}
				return 1
			}
			i++
			j++
			continue
		}
		si, sj := i, j
		for i < len(a) && isDigit(a[i]) {
			i++
		}
		for j < len(b) && isDigit(b[j]) {
			j++
		}
		da := strings.TrimLeft(a[si:i], "0")
		db := strings.TrimLeft(b[sj:j], "0")
		if len(da) != len(db) {
			if len(da) < len(db) {
				return -1
			}
			return 1
		}
		if c := strings.Compare(da, db); c != 0 {
			return c
		}
		if padding == 0 && i-si != j-sj {
			if i-si < j-sj {
				padding = -1
			} else {
				padding = 1
			}
		}
	}
	switch {
	case len(a)-i < len(b)-j:
		return -1
	case len(a)-i > len(b)-j:
		return 1
	case padding != 0:
		return padding
	}
	return strings.Compare(a, b)
}

// Gather groups hosts by identical key, as ClusterShell's gather mode does
// for output aggregation. Groups are sorted by size (largest first), then by
// their folded host list; hosts within a group are sorted naturally.
func Gather(keyOf map[string]string) []Group {
	byKey := map[string][]string{}
	for host, key := range keyOf {
		byKey[key] = append(byKey[key], host)
	}
	groups := make([]Group, 0, len(byKey))
	for key, hosts := range byKey {
		slices.SortFunc(hosts, compareNatural)
		groups = append(groups, Group{Key: key, Hosts: hosts, Folded: Fold(hosts)})
	}
	sort.Slice(groups, func(i, j int) bool {
		gi, gj := groups[i], groups[j]
		if len(gi.Hosts) != len(gj.Hosts) {
			return len(gi.Hosts) > len(gj.Hosts)
		}
		if gi.Folded != gj.Folded {
			return NaturalLess(gi.Folded, gj.Folded)
		}
		return gi.Key < gj.Key
	})
	return groups
}
