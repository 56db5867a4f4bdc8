package executor

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/sshx"
)

// signerCache parses each private key once per run. A passphrase makes a
// parse expensive on purpose (bcrypt rounds of the OpenSSH format, tens of
// milliseconds of CPU or more), and a run over a thousand hosts with one
// credential would otherwise pay that at every connection.
//
// Entries are keyed by run and by a digest of the key and its passphrase,
// so a credential that changes is parsed anew; they expire after ttl and
// there are at most max of them (a key that does not fit is parsed without
// being kept). Concurrent hosts of a run wait for the one parse in
// flight instead of starting their own.
type signerCache struct {
	ttl   time.Duration
	max   int
	now   func() time.Time
	parse func(pemBytes, passphrase []byte) (ssh.Signer, error) // sshx.ParsePrivateKey; tests count calls

	mu      sync.Mutex
	entries map[signerKey]*signerEntry
}

type signerKey struct {
	run    uuid.UUID
	digest [sha256.Size]byte
}

type signerEntry struct {
	ready  chan struct{} // closed once signer and err are set
	signer ssh.Signer
	err    error
	at     time.Time
}

const (
	signerTTL = 10 * time.Minute
	signerMax = 256
)

func newSignerCache() *signerCache {
	return &signerCache{ttl: signerTTL, max: signerMax, now: time.Now, parse: sshx.ParsePrivateKey,
		entries: map[signerKey]*signerEntry{}}
}

// apply returns t with a parsed Signer on every hop that logs in with a
// private key. The hops are copies: t and its jump chain are not changed
// (the connection pool keys on them). An unusable key is an error, as Dial
// would report it.
func (c *signerCache) apply(ctx context.Context, run uuid.UUID, t sshx.Target) (sshx.Target, error) {
	out := t
	for hop := &out; hop != nil; hop = hop.Jump {
		if hop.Jump != nil {
			j := *hop.Jump
			hop.Jump = &j
		}
		if hop.Signer != nil || len(hop.PrivateKey) == 0 {
			continue
		}
		s, err := c.get(ctx, run, hop.PrivateKey, hop.Passphrase)
		if err != nil {
			return t, err
		}
		hop.Signer = s
	}
	return out, nil
}

// get returns the signer of a key for a run, parsing it at most once while
// the entry lives.
func (c *signerCache) get(ctx context.Context, run uuid.UUID, pemBytes, passphrase []byte) (ssh.Signer, error) {
	k := signerKey{run: run, digest: keyDigest(pemBytes, passphrase)}
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[k]
	if ok && now.Sub(e.at) >= c.ttl {
		delete(c.entries, k)
		ok = false
	}
	if !ok {
		e = &signerEntry{ready: make(chan struct{}), at: now}
		if c.makeRoom(now) {
			c.entries[k] = e
		}
		c.mu.Unlock()
		e.signer, e.err = c.parse(pemBytes, passphrase)
		close(e.ready)
		return e.signer, e.err
	}
	c.mu.Unlock()
	select {
	case <-e.ready:
		return e.signer, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// makeRoom drops expired entries and reports whether a new one fits. It
// runs at every miss (a new run, a new key): at most max entries are
// walked, and parsed keys of finished runs go at the next run's first
// connection. Called with mu held.
func (c *signerCache) makeRoom(now time.Time) bool {
	for k, e := range c.entries {
		if now.Sub(e.at) >= c.ttl {
			delete(c.entries, k)
		}
	}
	return len(c.entries) < c.max
}

// forget drops the keys parsed for a run.
func (c *signerCache) forget(run uuid.UUID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if k.run == run {
			delete(c.entries, k)
		}
	}
}

// size is how many keys are kept.
func (c *signerCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// keyDigest identifies a key with its passphrase without keeping either.
func keyDigest(pemBytes, passphrase []byte) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(pemBytes)))
	h.Write(n[:])
	h.Write(pemBytes)
	h.Write(passphrase)
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}
