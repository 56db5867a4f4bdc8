package sshx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Client is a logged-in connection to one host. Run may be called from
// several goroutines at once; each call opens its own session (sshd's
// MaxSessions, 10 by default, bounds how many run at once).
//
// Besides the library's own, a Client runs two goroutines: one answers the
// host's global requests and notices the end of the connection, one sends
// keepalives; each running command adds one (two with Stdin). Close waits
// for all of them.
type Client struct {
	conn  ssh.Conn
	ssh   *ssh.Client
	jumps []*ssh.Client // outermost first
	hops  []Hop
	cfg   Config

	done    chan struct{} // closed when the connection to the target has ended
	lost    atomic.Bool   // the keepalive watchdog gave the connection up
	closing atomic.Bool   // Close was called
	active  atomic.Int32  // commands running

	// signalRequest is the channel request that signals a command; tests
	// change it to one that sshd refuses, to exercise the fallback kill.
	signalRequest string

	closeOnce sync.Once
	closeErr  error
	mu        sync.Mutex     // orders wg.Add in goTracked against Close
	wg        sync.WaitGroup // every goroutine of the Client and of its commands
}

func newClient(conn ssh.Conn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, jumps []*ssh.Client, hops []Hop, cfg Config) *Client {
	c := &Client{conn: conn, jumps: jumps, hops: hops, cfg: cfg, done: make(chan struct{}), signalRequest: "signal"}
	// The library would start a goroutine just to answer global requests;
	// ours does that and also tells us when the connection ends (the mux
	// closes the request channel then), so the library gets a closed one.
	none := make(chan *ssh.Request)
	close(none)
	c.ssh = ssh.NewClient(conn, chans, none)
	c.wg.Add(2)
	go c.serveRequests(reqs)
	go c.keepAlive()
	return c
}

// HostKey is the key the target presented. When FirstContact is true the
// caller should pin it.
func (c *Client) HostKey() ssh.PublicKey { return c.hops[len(c.hops)-1].HostKey }

// FirstContact reports that nothing was pinned for the target and the
// auto_add policy accepted its key.
func (c *Client) FirstContact() bool { return c.hops[len(c.hops)-1].FirstContact }

// Hops describes every host of the chain, jump hosts first and the target
// last, so that the caller can pin jump hosts' keys on first contact too.
func (c *Client) Hops() []Hop {
	out := make([]Hop, len(c.hops))
	copy(out, c.hops)
	return out
}

// Close closes the connection and those to the jump hosts, and waits for
// the Client's goroutines. Commands still running get a "client closed"
// error and, like any command whose connection ends without a signal, keep
// running on the host: cancel their contexts first.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closing.Store(true)
		c.mu.Unlock()
		alive := !c.ended()
		err := c.closeConns()
		c.wg.Wait()
		if alive && !c.lost.Load() && len(c.jumps) == 0 && !errors.Is(err, net.ErrClosed) {
			c.closeErr = err
		}
	})
	return c.closeErr
}

// closeConns ends the connection and the chain under it, outermost first:
// that one is a TCP socket whose Close never blocks, and every connection
// tunnelled through it fails at once. Closing a tunnelled connection first
// would send a message through jump hosts that may no longer answer.
func (c *Client) closeConns() error {
	for _, j := range c.jumps {
		_ = j.Close()
	}
	return c.conn.Close()
}

// goTracked runs f in a goroutine that Close waits for, unless the Client
// is closing. A command's goroutines are tracked by the Client because a
// command whose end the host never confirms is abandoned by Run; they end
// when the connection closes.
func (c *Client) goTracked(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing.Load() {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

// Usable reports that the connection is up and not being closed: a Client
// kept for reuse is checked with it (and Ping) before a new command.
func (c *Client) Usable() bool { return !c.ended() && !c.closing.Load() && !c.lost.Load() }

// Ping makes one keepalive round trip, to learn that an idle connection
// still reaches the host before a command is started on it.
func (c *Client) Ping(ctx context.Context) error {
	if !c.Usable() {
		return fmt.Errorf("ping: %w: the connection has ended", ErrConnectionLost)
	}
	answered := make(chan error, 1)
	if !c.goTracked(func() {
		_, _, err := c.conn.SendRequest("keepalive@openssh.com", true, nil)
		answered <- err
	}) {
		return fmt.Errorf("ping: ssh client closed: %w", net.ErrClosed)
	}
	select {
	case err := <-answered:
		if err != nil {
			return fmt.Errorf("ping: %w: %v", ErrConnectionLost, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ping: %w", ctx.Err())
	}
}

func (c *Client) ended() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *Client) serveRequests(reqs <-chan *ssh.Request) {
	defer c.wg.Done()
	defer close(c.done)
	for r := range reqs {
		if r.WantReply {
			_ = r.Reply(false, nil)
		}
	}
}

// lostAfter is how long the connection may stay silent: keepAliveMaxMissed
// keepalives unanswered, and the next one due.
func (c *Client) lostAfter() time.Duration {
	return c.cfg.KeepAlive * (keepAliveMaxMissed + 1)
}

// keepAlive sends keepalive@openssh.com every cfg.KeepAlive. A blocked
// SendRequest cannot count its own misses, so a watchdog timer, reset by
// every reply, closes the connection when replies stop: everything waiting
// on it (sessions, SendRequest) then returns.
func (c *Client) keepAlive() {
	defer c.wg.Done()
	fired := make(chan struct{})
	watchdog := time.AfterFunc(c.lostAfter(), func() {
		c.lost.Store(true)
		_ = c.closeConns()
		close(fired)
	})
	defer func() {
		if !watchdog.Stop() {
			<-fired
		}
	}()
	tick := time.NewTicker(c.cfg.KeepAlive)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		if _, _, err := c.conn.SendRequest("keepalive@openssh.com", true, nil); err != nil {
			return // the connection has ended; c.done is about to close
		}
		if !watchdog.Stop() {
			return // it fired meanwhile: the connection is being closed as lost
		}
		watchdog.Reset(c.lostAfter())
	}
}
