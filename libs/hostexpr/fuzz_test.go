package hostexpr

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// FuzzExpandFold: for any set of names Fold can represent (no ',', '[',
// ']', whitespace or leading '!'), Expand(Fold(names)) is that set again,
// and folding the expansion gives the same text. The input is the names,
// one per line.
func FuzzExpandFold(f *testing.F) {
	for _, seed := range []string{
		"web01\nweb02\nweb03\nweb05\ndb1",
		"web8\nweb9\nweb10",
		"web1\nweb01\nweb2\nweb02",
		"rack1-node01\nrack1-node02\nrack2-node01",
		"db1.example.org\ndb2.example.org\ndb4.example.org",
		"a00\na01\na1\na0",
		"x9y1z\nx10y1z\nx11y2z",
		"n0\nn00\nn000\nn1\nn001",
		"host-007\nhost-008\nhost-099\nhost-100",
		"a\nb\nc1\nc01\nc001\nc2",
		"10.0.0.1\n10.0.0.2\n10.0.1.1",
		"web99999999999999999999\nweb1",
		"ü1\nü2\n日本3",
		"a-1\na-2\na--3",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		var names []string
		for _, n := range strings.Split(input, "\n") {
			if n == "" || strings.ContainsAny(n, ",[]") || strings.HasPrefix(n, "!") || strings.IndexFunc(n, unicode.IsSpace) >= 0 {
				continue // outside what Fold promises to represent
			}
			names = append(names, n)
		}
		folded := Fold(names)
		got, err := Expand(folded)
		if len(names) == 0 {
			if folded != "" {
				t.Fatalf("Fold of no names = %q", folded)
			}
			return
		}
		if errors.Is(err, ErrTooComplex) {
			t.Skip("over Expand's bounds")
		}
		if err != nil {
			t.Fatalf("Expand(Fold(%q)) = Expand(%q): %v", names, folded, err)
		}
		want := slices.Clone(names)
		slices.Sort(want)
		want = slices.Compact(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("Expand(Fold(%q)) via %q = %q, want %q", names, folded, got, want)
		}
		if again := Fold(got); again != folded {
			t.Fatalf("Fold(Expand(%q)) = %q", folded, again)
		}
	})
}
