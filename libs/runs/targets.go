package runs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/testum/testum/libs/hostexpr"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// MaxRunHosts bounds one run's fan-out.
const MaxRunHosts = 20000

// resolve turns the request's selectors into the run's hosts, in the order
// given, each platform once. It reads platforms in short transactions of
// their own and matches the host expression outside any transaction,
// within hostexpr's bounds and ctx.
func (s *Service) resolve(ctx context.Context, t Targets) ([]store.NewRunHost, error) {
	labels, hosts := strings.TrimSpace(t.Labels), strings.TrimSpace(t.Hosts)
	if len(t.PlatformIDs) == 0 && labels == "" && hosts == "" {
		return nil, testum.Invalid("targets are empty: give platform_ids, labels or hosts")
	}
	if len(hosts) > hostexpr.MaxExprBytes { // before reading anything
		return nil, &testum.Error{Code: testum.CodeInvalid, Reason: "hosts_too_complex",
			Message: fmt.Sprintf("hosts: the expression is %d bytes long; at most %d", len(hosts), hostexpr.MaxExprBytes)}
	}
	// The union of what each selector names, in order: ids, then labels,
	// then the host expression.
	var ids []int64
	var byName map[string]int64
	var names []string
	err := s.st.InTx(ctx, func(tx Tx) error {
		if len(t.PlatformIDs) > 0 {
			ps, err := tx.PlatformsByIDs(ctx, t.PlatformIDs)
			if err != nil {
				return err
			}
			known := make(map[int64]bool, len(ps))
			for _, p := range ps {
				known[p.ID] = true
			}
			var missing []string
			for _, id := range t.PlatformIDs {
				if !known[id] {
					missing = append(missing, fmt.Sprint(id))
				}
			}
			if len(missing) > 0 {
				return testum.Invalid("unknown platform id(s): %s", strings.Join(missing, ", "))
			}
			ids = append(ids, t.PlatformIDs...)
		}
		if labels != "" {
			sel, err := testum.ParseLabelList(labels)
			if err != nil {
				return err
			}
			ps, err := tx.PlatformsMatching(ctx, sel, MaxRunHosts+1)
			if err != nil {
				return err
			}
			if len(ps) == 0 {
				return testum.Invalid("no platform has the labels %s", labels)
			}
			for _, p := range ps {
				ids = append(ids, p.ID)
			}
		}
		if hosts != "" {
			var err error
			byName, names, err = tx.PlatformNames(ctx)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if hosts != "" {
		matched, unknown, err := hostexpr.MatchContext(ctx, hosts, names)
		if err != nil {
			return nil, hostsError(err)
		}
		if len(unknown) > 0 {
			return nil, testum.Invalid("hosts: no platform named %s", hostexpr.Fold(unknown))
		}
		if len(matched) == 0 {
			return nil, testum.Invalid("hosts %q names no platform", hosts)
		}
		for _, n := range matched {
			ids = append(ids, byName[n])
		}
	}
	seen := map[int64]bool{}
	var uniq []int64
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			uniq = append(uniq, id)
		}
	}
	if len(uniq) > MaxRunHosts {
		return nil, testum.Invalid("the targets name %d hosts; a run takes at most %d", len(uniq), MaxRunHosts)
	}
	var ps []testum.Platform
	err = s.st.InTx(ctx, func(tx Tx) error {
		var err error
		ps, err = tx.PlatformsByIDs(ctx, uniq)
		return err
	})
	if err != nil {
		return nil, err
	}
	byID := make(map[int64]testum.Platform, len(ps))
	for _, p := range ps {
		byID[p.ID] = p
	}
	out := make([]store.NewRunHost, 0, len(uniq))
	for _, id := range uniq {
		p, ok := byID[id]
		if !ok { // deleted since it was named
			return nil, testum.Invalid("platform %d no longer exists", id)
		}
		out = append(out, store.NewRunHost{PlatformID: id, Name: p.Name, Address: fmt.Sprintf("%s:%d", p.Host, p.Port)})
	}
	return out, nil
}

// hostsError is the answer to a host expression that failed: over a bound
// of hostexpr, an invalid error with reason hosts_too_complex naming the
// bound; a request that ended meanwhile, its context's error.
func hostsError(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	msg := "hosts: " + strings.TrimPrefix(err.Error(), "hostexpr: ")
	if errors.Is(err, hostexpr.ErrTooComplex) {
		return &testum.Error{Code: testum.CodeInvalid, Reason: "hosts_too_complex", Message: msg}
	}
	return testum.Invalid("%s", msg)
}
