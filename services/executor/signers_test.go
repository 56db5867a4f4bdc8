package executor

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/sshx"
)

func encryptedKey(t *testing.T, pass string) []byte {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(pass))
	if pass == "" {
		block, err = ssh.MarshalPrivateKey(priv, "")
	}
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}

// countingCache is a signerCache whose parses are counted and whose clock
// the test moves.
func countingCache(t *testing.T) (*signerCache, *atomic.Int64, *time.Time) {
	t.Helper()
	c := newSignerCache()
	var n atomic.Int64
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	c.parse = func(pemBytes, passphrase []byte) (ssh.Signer, error) {
		n.Add(1)
		return sshx.ParsePrivateKey(pemBytes, passphrase)
	}
	return c, &n, &now
}

// TestSignerCacheParsesOncePerRun: the hosts of one run over a passphrase
// credential, connecting at once, share one parse; a jump host with the
// same credential too.
func TestSignerCacheParsesOncePerRun(t *testing.T) {
	const pass = "correct horse"
	key := encryptedKey(t, pass)
	c, parses, now := countingCache(t)
	run := uuid.New()
	target := func(addr string) sshx.Target {
		return sshx.Target{Addr: addr, User: "ops", PrivateKey: key, Passphrase: []byte(pass),
			Jump: &sshx.Target{Addr: "127.0.0.9:22", User: "jump", PrivateKey: key, Passphrase: []byte(pass)}}
	}

	hosts := []string{"127.0.0.1:22", "127.0.0.2:22", "127.0.0.3:22"}
	got := make([]sshx.Target, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := target(h)
			out, err := c.apply(context.Background(), run, in)
			if err != nil {
				t.Error(err)
				return
			}
			if in.Signer != nil || in.Jump.Signer != nil {
				t.Error("apply changed the caller's target")
			}
			got[i] = out
		}()
	}
	wg.Wait()
	if n := parses.Load(); n != 1 {
		t.Fatalf("3 hosts and their jump host over one credential: %d parses, want 1", n)
	}
	for i, tg := range got {
		if tg.Signer == nil || tg.Jump == nil || tg.Jump.Signer == nil {
			t.Fatalf("host %d: no signer on every hop: %+v", i, tg)
		}
		if string(tg.Signer.PublicKey().Marshal()) != string(got[0].Signer.PublicKey().Marshal()) {
			t.Fatalf("host %d got another key", i)
		}
	}

	// Another run parses its own; so does a changed credential; entries
	// expire. (A key without passphrase from here on: only the counting
	// matters, and each passphrase parse costs seconds under -race.)
	plain := sshx.Target{Addr: hosts[0], User: "ops", PrivateKey: encryptedKey(t, "")}
	other := plain
	other.PrivateKey = encryptedKey(t, "")
	for i, step := range []struct {
		run uuid.UUID
		t   sshx.Target
	}{{run, plain}, {run, plain}, {uuid.New(), plain}, {run, other}} {
		if _, err := c.apply(context.Background(), step.run, step.t); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if n := parses.Load(); n != 4 {
		t.Fatalf("one more key, another run and another credential: %d parses, want 4", n)
	}
	*now = now.Add(signerTTL)
	if _, err := c.apply(context.Background(), run, plain); err != nil {
		t.Fatal(err)
	}
	if n, size := parses.Load(), c.size(); n != 5 || size != 1 {
		t.Fatalf("after the TTL: %d parses, %d entries; want 5 and only the fresh entry", n, size)
	}
}

// TestSignerCacheErrorsAndBound: a wrong passphrase is an error (parsed
// once per run as well), a key without passphrase works, and the cache
// never holds more than max entries.
func TestSignerCacheErrorsAndBound(t *testing.T) {
	c, parses, _ := countingCache(t)
	run := uuid.New()
	bad := sshx.Target{Addr: "127.0.0.1:22", User: "ops", PrivateKey: encryptedKey(t, "right"), Passphrase: []byte("wrong")}
	for range 3 {
		if _, err := c.apply(context.Background(), run, bad); !errors.Is(err, sshx.ErrWrongPassphrase) {
			t.Fatalf("wrong passphrase: %v", err)
		}
	}
	if n := parses.Load(); n != 1 {
		t.Fatalf("a wrong passphrase was tried %d times in one run", n)
	}
	if out, err := c.apply(context.Background(), run, sshx.Target{Addr: "h", Password: "pw"}); err != nil || out.Signer != nil {
		t.Fatalf("password target: %+v, %v", out, err)
	}

	c.max = 4
	c.parse = func([]byte, []byte) (ssh.Signer, error) { return nil, nil } // only the bookkeeping matters here
	for range 10 {
		if _, err := c.get(context.Background(), uuid.New(), bad.PrivateKey, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.size(); n > 4 {
		t.Fatalf("cache holds %d keys, max 4", n)
	}
}
