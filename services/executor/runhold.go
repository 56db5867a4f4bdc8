package executor

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/fleet"
	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// holdStore is what a run's hold reads: *store.Store.
type holdStore interface {
	RunPlatforms(ctx context.Context, run uuid.UUID) ([]testum.Platform, error)
	Platform(ctx context.Context, id int64) (testum.Platform, error)
	CredentialOpen(ctx context.Context, id int64) (store.Secret, error)
	CredentialsOpen(ctx context.Context, ids []int64) (map[int64]store.Secret, error)
}

// runHolds keeps, for each run with hosts on this executor, what all its
// hosts read alike: the platform rows of its hosts and their jump hosts
// (one query, read again when older than platformTTL) and its opened
// credentials (all those of the platforms read in one query when the
// first is asked for, each decrypted once while the hold lives). Each host task
// takes the hold of its run; when the last one of the run has been gone
// for linger, the credentials are zeroed and the run's parsed keys dropped
// from the signer cache. Sharing the rows means a host sees a platform
// edit up to platformTTL late; a host key pinned on first contact by a
// host of the run is written into the kept row at once, so that no later
// host of the run takes that hop for a first contact.
type runHolds struct {
	st          holdStore
	signers     *signerCache
	linger      time.Duration
	platformTTL time.Duration
	now         func() time.Time

	mu   sync.Mutex
	runs map[uuid.UUID]*runHold
}

func newRunHolds(st holdStore, signers *signerCache) *runHolds {
	return &runHolds{st: st, signers: signers, linger: runCacheTTL, platformTTL: runCacheTTL, now: time.Now,
		runs: map[uuid.UUID]*runHold{}}
}

// runHold is one run's share. Its methods are fleet.Source.
type runHold struct {
	h   *runHolds
	run uuid.UUID

	users int         // host tasks holding it; guarded by h.mu
	timer *time.Timer // the pending drop once users is 0; guarded by h.mu

	mu        sync.Mutex
	platforms *platformsEntry
	creds     map[int64]*credEntry
	runCreds  chan struct{} // the read of the run's credentials: closed once done; nil before, or after it failed
	dropped   bool
}

type platformsEntry struct {
	ready chan struct{} // closed once rows and err are set
	rows  map[int64]testum.Platform
	err   error
	at    time.Time
}

type credEntry struct {
	ready chan struct{} // closed once sec and err are set
	sec   store.Secret
	err   error
}

var _ fleet.Source = (*runHold)(nil)

// take returns the run's hold for one more host task; release gives it back.
func (h *runHolds) take(run uuid.UUID) *runHold {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.runs[run]
	if r == nil {
		r = &runHold{h: h, run: run, creds: map[int64]*credEntry{}}
		h.runs[run] = r
	}
	r.users++
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	return r
}

// release gives back a hold taken by a host task. The last one out starts
// the linger, after which the hold is dropped unless a task took it again.
func (r *runHold) release() {
	h := r.h
	h.mu.Lock()
	defer h.mu.Unlock()
	r.users--
	if r.users > 0 {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(h.linger, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if r.timer != t || r.users > 0 {
			return
		}
		delete(h.runs, r.run)
		r.drop()
	})
	r.timer = t
}

// dropAll drops every hold at once (the executor stops): no task uses them
// any more.
func (h *runHolds) dropAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.runs {
		if r.timer != nil {
			r.timer.Stop()
		}
		r.drop()
	}
	h.runs = map[uuid.UUID]*runHold{}
}

// drop zeroes the run's opened credentials and forgets its parsed keys.
// Nothing uses them: every task of the run released the hold. Called with
// h.mu held, so that the run's next task finds a fresh hold.
func (r *runHold) drop() {
	r.mu.Lock()
	r.dropped = true
	creds := r.creds
	r.creds = map[int64]*credEntry{}
	r.platforms = nil
	r.runCreds = nil
	r.mu.Unlock()
	for _, e := range creds {
		<-e.ready // a read in flight has no reader left; wait for it to zero it too
		clear(e.sec.Secret)
		clear(e.sec.Passphrase)
	}
	if r.h.signers != nil {
		r.h.signers.forget(r.run)
	}
}

// held reports how many runs have a hold.
func (h *runHolds) held() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.runs)
}

// Platform returns a platform of the run from the kept rows, reading them
// when they are missing or old; a platform not among them (added to a jump
// chain since) is read alone.
func (r *runHold) Platform(ctx context.Context, id int64) (testum.Platform, error) {
	rows, err := r.platformRows(ctx)
	if err == nil {
		r.mu.Lock()
		p, ok := rows[id]
		r.mu.Unlock()
		if ok {
			return p, nil
		}
	}
	return r.h.st.Platform(ctx, id)
}

func (r *runHold) platformRows(ctx context.Context) (map[int64]testum.Platform, error) {
	now := r.h.now()
	r.mu.Lock()
	e := r.platforms
	if e != nil && isClosed(e.ready) && (e.err != nil || now.Sub(e.at) >= r.h.platformTTL) {
		e = nil
	}
	if e == nil {
		e = &platformsEntry{ready: make(chan struct{}), at: now}
		r.platforms = e
		r.mu.Unlock()
		ps, err := r.h.st.RunPlatforms(ctx, r.run)
		rows := make(map[int64]testum.Platform, len(ps))
		for _, p := range ps {
			rows[p.ID] = p
		}
		e.rows, e.err = rows, err
		close(e.ready)
		return e.rows, e.err
	}
	r.mu.Unlock()
	select {
	case <-e.ready:
		return e.rows, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pinned writes host keys pinned on first contact into the kept rows.
func (r *runHold) pinned(hops []sshx.Hop) {
	if len(hops) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.platforms
	if e == nil || !isClosed(e.ready) || e.err != nil {
		return
	}
	for _, hop := range hops {
		if p, ok := e.rows[hop.ID]; ok && p.HostKey == "" {
			p.HostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hop.HostKey)))
			p.HostKeyFingerprint = sshx.Fingerprint(hop.HostKey)
			e.rows[hop.ID] = p
		}
	}
}

// CredentialOpen returns a credential of the run, decrypted once while the
// hold lives. The first ask reads every credential of the run's platforms
// in one query; one not among them (a platform added to a jump chain
// since, a credential that does not open) is read alone. Hosts that ask at
// once wait for the one read in flight; a failed read is not kept.
func (r *runHold) CredentialOpen(ctx context.Context, id int64) (store.Secret, error) {
	if err := r.openRunCredentials(ctx, id); err != nil {
		return store.Secret{}, err
	}
	for {
		r.mu.Lock()
		e, ok := r.creds[id]
		if !ok {
			e = &credEntry{ready: make(chan struct{})}
			if !r.dropped {
				r.creds[id] = e
			}
			r.mu.Unlock()
			e.sec, e.err = r.h.st.CredentialOpen(ctx, id)
			if e.err != nil {
				r.mu.Lock()
				if r.creds[id] == e {
					delete(r.creds, id)
				}
				r.mu.Unlock()
			}
			close(e.ready)
			return e.sec, e.err
		}
		r.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			return store.Secret{}, ctx.Err()
		}
		if e.err == nil {
			return e.sec, nil
		}
		// The read waited for failed (its context may have ended, not
		// ours): read again.
	}
}

// openRunCredentials reads, once per hold, the credentials of the run's
// platforms and of id in one query, and keeps those that opened. Hosts that
// ask meanwhile wait for it; after a failed read the next ask tries again.
func (r *runHold) openRunCredentials(ctx context.Context, id int64) error {
	r.mu.Lock()
	if done := r.runCreds; done != nil {
		r.mu.Unlock()
		select {
		case <-done:
			return nil // what it did not open is read alone
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	done := make(chan struct{})
	r.runCreds = done
	r.mu.Unlock()
	defer close(done)

	ids := []int64{id}
	if rows, err := r.platformRows(ctx); err == nil {
		seen := map[int64]bool{id: true}
		for _, p := range rows {
			if c := p.CredentialID; c != nil && !seen[*c] {
				seen[*c] = true
				ids = append(ids, *c)
			}
		}
	}
	secs, err := r.h.st.CredentialsOpen(ctx, ids)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if r.runCreds == done {
			r.runCreds = nil
		}
		return err
	}
	for cid, sec := range secs {
		if _, ok := r.creds[cid]; ok || r.dropped {
			// Read alone meanwhile, or nobody is left to use it.
			clear(sec.Secret)
			clear(sec.Passphrase)
			continue
		}
		e := &credEntry{ready: make(chan struct{}), sec: sec}
		close(e.ready)
		r.creds[cid] = e
	}
	return nil
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
