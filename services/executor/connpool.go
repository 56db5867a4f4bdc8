package executor

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"
	"sync"
	"time"

	"github.com/testum/testum/libs/sshx"
)

// connPool keeps the SSH connection of a finished command open for a
// while, so that the next command on the same host (a repeat run, the next
// step of a deploy) skips the TCP connect, the key exchange and the
// authentication — on the host, sshd's most expensive work. OpenSSH's
// ControlPersist does the same for a person's shell.
//
// A kept connection is used by one command at a time and only for the
// very same target: the key covers the platform, address, user, every
// secret and the pinned host keys of the whole jump chain, so a changed
// credential, pin or policy dials anew. Its keepalives keep running while
// it waits, so a connection the host dropped is noticed and not handed out.
type connPool struct {
	idleFor time.Duration // how long a connection may wait; 0 disables reuse
	max     int           // connections kept at most

	mu     sync.Mutex
	idle   map[string][]pooledConn // by target key, most recent last
	n      int
	closed bool
}

type pooledConn struct {
	c     *sshx.Client
	since time.Time
}

func newConnPool(idleFor time.Duration, max int) *connPool {
	return &connPool{idleFor: idleFor, max: max, idle: map[string][]pooledConn{}}
}

// get returns a kept connection for key that is still up, or nil.
func (p *connPool) get(key string) *sshx.Client {
	if p.idleFor <= 0 {
		return nil
	}
	var stale []*sshx.Client
	defer func() {
		for _, c := range stale {
			_ = c.Close()
		}
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	for conns := p.idle[key]; len(conns) > 0; conns = p.idle[key] {
		pc := conns[len(conns)-1]
		p.idle[key] = conns[:len(conns)-1]
		if len(p.idle[key]) == 0 {
			delete(p.idle, key)
		}
		p.n--
		if pc.c.Usable() && time.Since(pc.since) < p.idleFor {
			return pc.c
		}
		stale = append(stale, pc.c)
	}
	return nil
}

// put keeps c for key, or closes it when reuse is off, the pool is full
// or closed.
func (p *connPool) put(key string, c *sshx.Client, now time.Time) {
	p.mu.Lock()
	keep := p.idleFor > 0 && !p.closed && p.n < p.max && c.Usable()
	if keep {
		p.idle[key] = append(p.idle[key], pooledConn{c: c, since: now})
		p.n++
	}
	p.mu.Unlock()
	if !keep {
		_ = c.Close()
	}
}

// sweep closes the connections that waited longer than idleFor.
func (p *connPool) sweep(now time.Time) {
	var expired []*sshx.Client
	p.mu.Lock()
	for key, conns := range p.idle {
		kept := conns[:0]
		for _, pc := range conns {
			if now.Sub(pc.since) >= p.idleFor || !pc.c.Usable() {
				expired = append(expired, pc.c)
				continue
			}
			kept = append(kept, pc)
		}
		p.n -= len(conns) - len(kept)
		if len(kept) == 0 {
			delete(p.idle, key)
		} else {
			p.idle[key] = kept
		}
	}
	p.mu.Unlock()
	closeAll(expired)
}

// close closes every kept connection; later puts close theirs at once.
func (p *connPool) close() {
	var all []*sshx.Client
	p.mu.Lock()
	p.closed = true
	for _, conns := range p.idle {
		for _, pc := range conns {
			all = append(all, pc.c)
		}
	}
	p.idle, p.n = map[string][]pooledConn{}, 0
	p.mu.Unlock()
	closeAll(all)
}

func closeAll(cs []*sshx.Client) {
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() { defer wg.Done(); _ = c.Close() }()
	}
	wg.Wait()
}

// targetKey identifies everything a connection was authenticated with. It
// is a digest, so the secrets it covers are not kept in the map's keys.
func targetKey(platformID int64, t sshx.Target) string {
	h := sha256.New()
	fmt.Fprintf(h, "platform %d\n", platformID)
	for hop := &t; hop != nil; hop = hop.Jump {
		writeField(h, "id", []byte(strconv.FormatInt(hop.ID, 10)))
		writeField(h, "addr", []byte(hop.Addr))
		writeField(h, "user", []byte(hop.User))
		writeField(h, "password", []byte(hop.Password))
		if hop.Signer != nil {
			writeField(h, "signer", hop.Signer.PublicKey().Marshal())
		}
		writeField(h, "key", hop.PrivateKey)
		writeField(h, "passphrase", hop.Passphrase)
		writeField(h, "policy", []byte(hop.HostKey.Policy))
		if hop.HostKey.Pinned != nil {
			writeField(h, "pinned", hop.HostKey.Pinned.Marshal())
		}
		writeField(h, "hop", nil)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// pinnedTarget is t as it will be next time, with the keys a first
// contact has just pinned on the target's and the jump hosts' platforms:
// the key a new connection is kept under. The chain is copied; t is not
// changed.
func pinnedTarget(t sshx.Target, c *sshx.Client) sshx.Target {
	var chain []*sshx.Target // target first, outermost jump last
	for hop := &t; hop != nil; hop = hop.Jump {
		chain = append(chain, hop)
		if hop.Jump != nil {
			j := *hop.Jump
			hop.Jump = &j
		}
	}
	hops := c.Hops() // outermost jump first, target last
	if len(hops) != len(chain) {
		return t
	}
	for i, h := range hops {
		hop := chain[len(chain)-1-i]
		if hop.HostKey.Pinned == nil && h.FirstContact {
			hop.HostKey.Pinned = h.HostKey
		}
	}
	return t
}

// writeField writes a length-prefixed field, so that fields cannot run
// into each other.
func writeField(h hash.Hash, name string, v []byte) {
	fmt.Fprintf(h, "%s %d:", name, len(v))
	h.Write(v)
}
