package hostexpr

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{"web1", []string{"web1"}},
		{"web[1-3]", []string{"web1", "web2", "web3"}},
		{"web[01-03]", []string{"web01", "web02", "web03"}},
		{"web[8-10]", []string{"web8", "web9", "web10"}},
		{"web[08-10]", []string{"web08", "web09", "web10"}},
		{"db[1,3,5-7].example.org", []string{"db1.example.org", "db3.example.org", "db5.example.org", "db6.example.org", "db7.example.org"}},
		{"rack[1-2]-node[01-02]", []string{"rack1-node01", "rack1-node02", "rack2-node01", "rack2-node02"}},
		{"[1-2]x", []string{"1x", "2x"}},
		{"n[1-7/3]", []string{"n1", "n4", "n7"}},
		{" a , b ,a", []string{"a", "b"}},
		{"web[01-06],!web[03-04]", []string{"web01", "web02", "web05", "web06"}},
		{"web[1-3],! web2", []string{"web1", "web3"}},
		{"web1,!web1,web1", []string{"web1"}},
		{"web[1-3],!web2,web2", []string{"web1", "web2", "web3"}},
		{"!web1", []string{}},
		{"web[1-2],-web1", []string{"web1", "web2", "-web1"}},
		{"x[1,1,2]", []string{"x1", "x2"}},
		{"a*", []string{"a*"}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := Expand(tt.expr)
			if err != nil {
				t.Fatalf("Expand(%q): %v", tt.expr, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Expand(%q) = %q, want %q", tt.expr, got, tt.want)
			}
		})
	}
}

func TestExpandErrors(t *testing.T) {
	tests := []struct {
		expr string
		want string // substring of the error
	}{
		{"", `"": expression is empty`},
		{"  ", "expression is empty"},
		{"a,,b", `"a,,b": term 2 is empty`},
		{"a,", "term 2 is empty"},
		{"!", `"!": nothing to exclude`},
		{"web[5-1]", `hostexpr: "web[5-1]": range 5-1 is reversed`},
		{"web[1-3", `"web[1-3": unbalanced brackets: '[' without ']'`},
		{"web1-3]", `"web1-3]": unbalanced brackets: ']' without '['`},
		{"a,web[1-3,b", `"web[1-3,b": unbalanced brackets`},
		{"web[[1-2]]", `"web[[1-2]]": nested brackets`},
		{"web[]", `"web[]": empty range []`},
		{"web[1,,2]", "empty item in [1,,2]"},
		{"web[a-c]", `range bound "a" is not a number`},
		{"web[1-x]", `range bound "x" is not a number`},
		{"web[-3]", "missing range bound"},
		{"web[1-]", "missing range bound"},
		{"web[1-4/0]", `step "0" is not a positive number`},
		{"web[3/2]", "needs a range"},
		{"web[1-100001]", `"web[1-100001]": expands to more than 100000 hosts`},
		{"a[1-1000]b[1-1000]", "expands to more than 100000 hosts"},
		{"a[1-60000],b[1-60000]", `"b[1-60000]": expands to more than 100000 hosts`},
		{"a[0-9999999999999999999]", "too long"},
		{"web 1", "whitespace inside a host name"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := Expand(tt.expr)
			if err == nil {
				t.Fatalf("Expand(%q) = %d names, want error containing %q", tt.expr, len(got), tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Expand(%q) error = %q, want it to contain %q", tt.expr, err, tt.want)
			}
		})
	}
}

func TestExpandMaxHosts(t *testing.T) {
	got, err := Expand("n[1-100000]")
	if err != nil || len(got) != MaxHosts {
		t.Fatalf("Expand of exactly MaxHosts: %d names, err %v", len(got), err)
	}
}

func TestFold(t *testing.T) {
	tests := []struct {
		names []string
		want  string
	}{
		{nil, ""},
		{[]string{"web01"}, "web01"},
		{[]string{"web01", "web02", "web03", "web05", "db1"}, "db1,web[01-03,05]"},
		{[]string{"web8", "web9", "web10"}, "web[8-10]"},
		{[]string{"web08", "web09", "web10"}, "web[08-10]"},
		{[]string{"web1", "web01", "web2", "web02"}, "web[1-2,01-02]"},
		{[]string{"web3", "web1", "web2", "web2"}, "web[1-3]"},
		{[]string{"rack1-node01", "rack1-node02", "rack2-node01"}, "rack1-node[01-02],rack2-node01"},
		{[]string{"db1.example.org", "db2.example.org", "db4.example.org"}, "db[1-2,4].example.org"},
		{[]string{"alpha", "beta", "web10", "web2"}, "alpha,beta,web[2,10]"},
		{[]string{"web10", "web9", "web100"}, "web[9-10,100]"},
		{[]string{"a0", "a1"}, "a[0-1]"},
		{[]string{"a00", "a01", "a1"}, "a[00-01,1]"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.names, ","), func(t *testing.T) {
			if got := Fold(tt.names); got != tt.want {
				t.Errorf("Fold(%q) = %q, want %q", tt.names, got, tt.want)
			}
		})
	}
}

func TestFoldRoundTrip(t *testing.T) {
	exprs := []string{
		"web[01-20],!web[05-06]",
		"rack[1-3]-node[01-12]",
		"n[1-7/3],n[8-12],m[098-101]",
		"db[1,3,5-7].example.org,db[01-02].example.org",
		"a,b,c1,c01,c001,c2",
		"x[9-11]y[1-2]z",
	}
	for _, expr := range exprs {
		t.Run(expr, func(t *testing.T) {
			names, err := Expand(expr)
			if err != nil {
				t.Fatal(err)
			}
			folded := Fold(names)
			again, err := Expand(folded)
			if err != nil {
				t.Fatalf("Expand(Fold) of %q = %q: %v", expr, folded, err)
			}
			a, b := slices.Clone(names), slices.Clone(again)
			sort.Strings(a)
			sort.Strings(b)
			if !slices.Equal(a, b) {
				t.Errorf("round trip of %q via %q: got %q, want %q", expr, folded, b, a)
			}
		})
	}
}

func TestNaturalLess(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"web2", "web10", true},
		{"web10", "web2", false},
		{"web1", "web01", true},
		{"web01", "web1", false},
		{"web01", "web2", true},
		{"a", "b", true},
		{"a", "a", false},
		{"web", "web1", true},
		{"web1", "web1a", true},
		{"rack2-node10", "rack10-node1", true},
		{"db1", "web1", true},
		{"10.0.0.9", "10.0.0.10", true},
	}
	for _, tt := range tests {
		t.Run(tt.a+"<"+tt.b, func(t *testing.T) {
			if got := NaturalLess(tt.a, tt.b); got != tt.want {
				t.Errorf("NaturalLess(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
	names := []string{"web10", "web1", "web01", "db2", "web2", "web001", "db10", "x"}
	slices.SortFunc(names, compareNatural)
	want := []string{"db2", "db10", "web1", "web01", "web001", "web2", "web10", "x"}
	if !slices.Equal(names, want) {
		t.Errorf("sorted = %q, want %q", names, want)
	}
}

func TestMatch(t *testing.T) {
	known := []string{"web01", "web02", "web03", "web10", "db-a", "db-b", "db-cc", "mail"}
	tests := []struct {
		expr             string
		matched, unknown []string
	}{
		{"web[01-02]", []string{"web01", "web02"}, nil},
		{"web[02-04]", []string{"web02", "web03"}, []string{"web04"}},
		{"web*", []string{"web01", "web02", "web03", "web10"}, nil},
		{"web*,!web0[2-3]", []string{"web01", "web10"}, nil},
		{"db-?", []string{"db-a", "db-b"}, nil},
		{"mail,db-?", []string{"mail", "db-a", "db-b"}, nil},
		{"nope*,mail", []string{"mail"}, []string{"nope*"}},
		{"web0[1-2]*", []string{"web01", "web02"}, nil},
		{"ghost,!ghost", nil, nil},
		{"!web01", nil, nil},
		{"x1,web01,x2", []string{"web01"}, []string{"x1", "x2"}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			m, u, err := Match(tt.expr, known)
			if err != nil {
				t.Fatalf("Match(%q): %v", tt.expr, err)
			}
			if !slices.Equal(m, tt.matched) || !slices.Equal(u, tt.unknown) {
				t.Errorf("Match(%q) = %q, %q; want %q, %q", tt.expr, m, u, tt.matched, tt.unknown)
			}
		})
	}
	for _, bad := range []string{"web[2-1]", "a,,b", `web*\`, "web[1-2]*[x"} {
		if _, _, err := Match(bad, known); err == nil {
			t.Errorf("Match(%q): want error", bad)
		}
	}
}

func TestGather(t *testing.T) {
	keyOf := map[string]string{
		"web01": "ok", "web02": "ok", "web03": "ok", "web10": "ok",
		"db1": "fail", "db2": "fail",
		"mail": "other", "cache1": "zzz",
	}
	got := Gather(keyOf)
	var lines []string
	for _, g := range got {
		lines = append(lines, fmt.Sprintf("%s=%s(%d)", g.Folded, g.Key, len(g.Hosts)))
	}
	want := []string{"web[01-03,10]=ok(4)", "db[1-2]=fail(2)", "cache1=zzz(1)", "mail=other(1)"}
	if !slices.Equal(lines, want) {
		t.Errorf("Gather = %q, want %q", lines, want)
	}
	if !slices.Equal(got[0].Hosts, []string{"web01", "web02", "web03", "web10"}) {
		t.Errorf("hosts not sorted naturally: %q", got[0].Hosts)
	}
	if len(Gather(nil)) != 0 {
		t.Error("Gather(nil) should be empty")
	}
}

// TestBoundedCost: whatever an expression looks like, what it may cost is
// bounded, and every bound is an ErrTooComplex naming it.
func TestBoundedCost(t *testing.T) {
	churn := strings.Repeat("x[1-99999],!x[1-99999],", 3) + "y" // 600k names produced, none kept
	known := make([]string, 20000)
	for i := range known {
		known[i] = fmt.Sprintf("h%d", i)
	}
	tests := []struct {
		name  string
		expr  string
		bound string
	}{
		{"removed names count", churn, "names"},
		{"one removal over the budget", "a[1-60000],!a[1-60000],b", "names"},
		{"too long", strings.Repeat("a", MaxExprBytes+1), "length"},
		{"too many terms", strings.Repeat("a,", MaxTerms) + "a", "terms"},
		{"one term too large", "a[1-100001]", "hosts"},
		{"too many globs", strings.Repeat("z*,", 120) + "h1", "globs"},
		{"glob hits count", strings.Repeat("h*,!h*,", 4) + "y", "names"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Match(tt.expr, known)
			var le *LimitError
			if !errors.Is(err, ErrTooComplex) || !errors.As(err, &le) || le.Bound != tt.bound {
				t.Fatalf("Match: %v, want the %s bound", err, tt.bound)
			}
			if len(tt.expr) < 200 && !strings.Contains(err.Error(), "hostexpr: ") {
				t.Errorf("error %q does not say where", err)
			}
		})
	}
	// Just under the bounds still works.
	if got, err := Expand("a[1-49999],!a[1-49999],b"); err != nil || !slices.Equal(got, []string{"b"}) {
		t.Fatalf("under the budget: %q, %v", got, err)
	}
	if got, err := Expand(strings.Repeat("a,", MaxTerms-1) + "a"); err != nil || len(got) != 1 {
		t.Fatalf("MaxTerms terms: %d names, %v", len(got), err)
	}
}

func TestExpandStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ExpandContext(ctx, "a,b"); !errors.Is(err, context.Canceled) {
		t.Fatalf("ExpandContext on a cancelled context: %v", err)
	}
	if _, _, err := MatchContext(ctx, "a*", []string{"ab"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("MatchContext on a cancelled context: %v", err)
	}
	if got, err := ExpandContext(context.Background(), "a,b"); err != nil || len(got) != 2 {
		t.Fatalf("ExpandContext: %q, %v", got, err)
	}
}
