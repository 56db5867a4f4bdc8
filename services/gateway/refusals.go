package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/testum/testum/libs/testum"
)

// Refusals that anyone can cause cheaply (a bad token, a missing CSRF
// header, a foreign origin, a rate-limited login) are audited, but at most
// once per client address and kind per refusalWindow in each gateway: a
// flood must not flood the audit log, nor cost a database write per
// request. The entry after a quiet spell, or the sweep, says how many were
// folded into the previous one.
const (
	refusalWindow  = time.Minute
	refusalMaxKeys = 10000 // addresses tracked at once; beyond, they share one key
)

type refusalKey struct{ ip, kind string }

type refusalSpell struct {
	start  time.Time
	folded int // refusals after the audited one, not yet reported
	action string
	target string
}

// refusalLog remembers, per (address, kind), when the last refusal was
// audited and how many followed it unaudited.
type refusalLog struct {
	mu     sync.Mutex
	spells map[refusalKey]*refusalSpell
}

func newRefusalLog() *refusalLog { return &refusalLog{spells: map[refusalKey]*refusalSpell{}} }

// admit says whether a refusal is to be audited now, and how many earlier
// ones of the same address and kind went unaudited.
func (l *refusalLog) admit(k refusalKey, now time.Time, action, target string) (audit bool, folded int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.spells[k]; !ok && len(l.spells) >= refusalMaxKeys {
		// Under a flood from very many addresses, ended spells are dropped
		// without their counts, then the addresses share one key: the log
		// stays bounded, and still shows the flood.
		l.pruneLocked(now, nil)
		if len(l.spells) >= refusalMaxKeys {
			k.ip = "(many addresses)"
		}
	}
	return l.admitLocked(k, now, action, target)
}

func (l *refusalLog) admitLocked(k refusalKey, now time.Time, action, target string) (bool, int) {
	s, ok := l.spells[k]
	if ok && now.Sub(s.start) < refusalWindow {
		s.folded++
		return false, 0
	}
	folded := 0
	if ok {
		folded = s.folded
	}
	l.spells[k] = &refusalSpell{start: now, action: action, target: target}
	return true, folded
}

// pruneLocked forgets spells whose window ended; report gets those that
// folded refusals nobody has audited yet.
func (l *refusalLog) pruneLocked(now time.Time, report func(refusalKey, *refusalSpell)) {
	for k, s := range l.spells {
		if now.Sub(s.start) >= refusalWindow {
			if s.folded > 0 && report != nil {
				report(k, s)
			}
			delete(l.spells, k)
		}
	}
}

// auditRefusal audits a refusal of kind (csrf, token, origin, login_rate)
// unless one of the same address and kind was audited within the window.
func (g *Gateway) auditRefusal(c *fiber.Ctx, kind, action, target string, details map[string]any) {
	ip := g.clientIP(c)
	ok, folded := g.refusal.admit(refusalKey{ip: ip, kind: kind}, g.now(), action, target)
	if !ok {
		return
	}
	d := map[string]any{"kind": kind}
	for k, v := range details {
		d[k] = v
	}
	if folded > 0 {
		d["folded_before"] = folded // refusals of the previous window not audited one by one
	}
	g.auditAlone(c, action, target, d, testum.AuditDenied)
}

// flushRefusals audits the counts of refusals folded into windows that
// have ended, so that the last spell of a flood is accounted for too.
func (g *Gateway) flushRefusals(ctx context.Context) {
	type pending struct {
		k refusalKey
		s refusalSpell
	}
	var out []pending
	g.refusal.mu.Lock()
	g.refusal.pruneLocked(g.now(), func(k refusalKey, s *refusalSpell) { out = append(out, pending{k, *s}) })
	g.refusal.mu.Unlock()
	for _, p := range out {
		e := testum.AuditEntry{Action: p.s.action, Target: p.s.target, IP: p.k.ip, Outcome: testum.AuditDenied,
			Details: map[string]any{"kind": p.k.kind, "folded": p.s.folded, "since": p.s.start.UTC().Format(time.RFC3339)}}
		if err := g.st.Audit(ctx, e); err != nil {
			g.log.Warn("audit write failed", "action", p.s.action, "err", err)
		}
	}
}
