package executor

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/logstore"
	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testenv"
	"github.com/testum/testum/libs/testum"
)

// plainSealer keeps secrets as they are: the executor's tests are about who
// opens them how often, not about encryption.
type plainSealer struct{}

func (plainSealer) CurrentKeyID() string { return "plain" }
func (plainSealer) Seal(plaintext, _ []byte) ([]byte, error) {
	return append([]byte{}, plaintext...), nil
}
func (plainSealer) Open(ciphertext, _ []byte) ([]byte, error) {
	return append([]byte{}, ciphertext...), nil
}

// countingSealer is a plainSealer that counts decryptions.
type countingSealer struct {
	plainSealer
	opens atomic.Int64
}

func (s *countingSealer) Open(ciphertext, ad []byte) ([]byte, error) {
	s.opens.Add(1)
	return s.plainSealer.Open(ciphertext, ad)
}

// countingHolds counts what a run's hold reads from the store (opens: one
// credential read alone; manyOpens: credentials read together), and keeps
// the secrets it handed out so that the test can see them zeroed.
type countingHolds struct {
	st                     holdStore
	runPlatforms, platform atomic.Int64
	opens, manyOpens       atomic.Int64
	mu                     sync.Mutex
	opened                 []store.Secret
}

func (c *countingHolds) RunPlatforms(ctx context.Context, run uuid.UUID) ([]testum.Platform, error) {
	c.runPlatforms.Add(1)
	return c.st.RunPlatforms(ctx, run)
}

func (c *countingHolds) Platform(ctx context.Context, id int64) (testum.Platform, error) {
	c.platform.Add(1)
	return c.st.Platform(ctx, id)
}

func (c *countingHolds) CredentialOpen(ctx context.Context, id int64) (store.Secret, error) {
	c.opens.Add(1)
	sec, err := c.st.CredentialOpen(ctx, id)
	if err == nil {
		c.mu.Lock()
		c.opened = append(c.opened, sec)
		c.mu.Unlock()
	}
	return sec, err
}

func (c *countingHolds) CredentialsOpen(ctx context.Context, ids []int64) (map[int64]store.Secret, error) {
	c.manyOpens.Add(1)
	secs, err := c.st.CredentialsOpen(ctx, ids)
	c.mu.Lock()
	for _, sec := range secs {
		c.opened = append(c.opened, sec)
	}
	c.mu.Unlock()
	return secs, err
}

func zeroed(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// TestRunOpensSharedCredentialOnce: a 100-host run whose platforms share
// one passphrase-protected key, on a real executor, PostgreSQL, NATS and
// sshd. The credential is read and decrypted once and its key parsed once
// for the whole run (one read of the run's credentials, none alone, two
// decryptions: the key and its passphrase), the platform rows (jump host
// included) come from one query and none is read alone; every host ends ok, and once the executor stops
// the opened secret is zeroed and the parsed key forgotten.
func TestRunOpensSharedCredentialOnce(t *testing.T) {
	const hosts, pass = 100, "correct horse"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	url := testenv.Postgres(t)
	if err := store.Migrate(ctx, url, nil); err != nil {
		t.Fatal(err)
	}
	sealer := &countingSealer{}
	st, err := store.Open(ctx, store.Config{URL: url, MaxConns: 8, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	srv := testenv.NATS(t)
	nc, js := srv.JetStream(t)
	if err := bus.EnsureStreams(ctx, js, bus.StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	sshd := testenv.StartSSHD(t)

	raw, err := ssh.ParseRawPrivateKey(sshd.KeyUser.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(raw, "", []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	cred, err := st.CredentialCreate(ctx, store.NewSecret{Name: "shared", Kind: testum.AuthPrivateKey,
		Secret: pem.EncodeToMemory(block), Passphrase: []byte(pass)})
	if err != nil {
		t.Fatal(err)
	}
	platform := func(name string, jump *int64) testum.Platform {
		p, err := st.PlatformCreate(ctx, store.NewPlatform{Name: name, Host: "127.0.0.1", Port: sshd.Port,
			Username: sshd.KeyUser.Name, AuthMethod: testum.AuthPrivateKey, CredentialID: &cred.ID, JumpPlatformID: jump})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	bastion := platform("bastion", nil)
	nr := store.NewRun{ID: uuid.New(), Kind: "command", Command: "true",
		Spec: testum.RunSpec{Command: "true", TimeoutSeconds: 60, Parallelism: hosts}}
	for i := range hosts {
		p := platform(fmt.Sprintf("h%03d", i), &bastion.ID)
		nr.Hosts = append(nr.Hosts, store.NewRunHost{PlatformID: p.ID, Name: p.Name, Address: "127.0.0.1"})
	}
	run, err := st.RunCreate(ctx, nr)
	if err != nil {
		t.Fatal(err)
	}

	logs, err := logstore.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Slots: 32, SpoolDir: t.TempDir(), HeartbeatInterval: 500 * time.Millisecond},
		Deps{Store: st, NATS: nc, Logs: logs})
	if err != nil {
		t.Fatal(err)
	}
	counts := &countingHolds{st: st}
	e.holds.st = counts
	e.holds.linger, e.holds.platformTTL = time.Hour, time.Hour // only the run's end drops them here
	var parses atomic.Int64
	e.signers.parse = func(pemBytes, passphrase []byte) (ssh.Signer, error) {
		parses.Add(1)
		return sshx.ParsePrivateKey(pemBytes, passphrase)
	}
	runCtx, stop := context.WithCancel(ctx)
	var runErr error
	exited := make(chan struct{})
	go func() { defer close(exited); runErr = e.Run(runCtx) }()
	defer func() {
		stop()
		<-exited
	}()

	if err := bus.PublishRun(ctx, js, run.ID, bus.RunMsgID(run.ID, "created")); err != nil {
		t.Fatal(err)
	}
	for {
		r, err := st.Run(ctx, run.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r.State.Final() {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("run still %s", r.State)
		case <-time.After(50 * time.Millisecond):
		}
	}
	rhs, err := st.RunHosts(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range rhs {
		if h.State != testum.HostOK {
			t.Errorf("host %s: %s %q", h.Name, h.State, h.Error)
		}
	}
	if many, alone := counts.manyOpens.Load(), counts.opens.Load(); many != 1 || alone != 0 {
		t.Errorf("credentials read %d times together and %d alone for %d hosts and their jump host, want once together",
			many, alone, hosts)
	}
	if n := sealer.opens.Load(); n != 2 {
		t.Errorf("%d decryptions for %d hosts over one credential with a passphrase, want 2 (once each)", n, hosts)
	}
	if n := parses.Load(); n != 1 {
		t.Errorf("the shared key was parsed %d times, want once", n)
	}
	if n, m := counts.runPlatforms.Load(), counts.platform.Load(); n != 1 || m != 0 {
		t.Errorf("platform rows read in %d run queries and %d single reads, want 1 and 0", n, m)
	}

	stop()
	<-exited
	if runErr != nil {
		t.Errorf("executor: %v", runErr)
	}
	counts.mu.Lock()
	defer counts.mu.Unlock()
	for _, sec := range counts.opened {
		if !zeroed(sec.Secret) || !zeroed(sec.Passphrase) {
			t.Error("the opened credential was not zeroed when the executor stopped")
		}
	}
	if n := e.signers.size(); n != 0 {
		t.Errorf("%d parsed keys kept after the executor stopped", n)
	}
}

// fakeHoldStore serves one platform and one credential, counting opens.
type fakeHoldStore struct {
	opens atomic.Int64
	fail  atomic.Bool
}

func (f *fakeHoldStore) RunPlatforms(context.Context, uuid.UUID) ([]testum.Platform, error) {
	return []testum.Platform{{ID: 1, Name: "p"}}, nil
}

func (f *fakeHoldStore) Platform(_ context.Context, id int64) (testum.Platform, error) {
	return testum.Platform{ID: id}, nil
}

func (f *fakeHoldStore) CredentialsOpen(ctx context.Context, ids []int64) (map[int64]store.Secret, error) {
	out := map[int64]store.Secret{}
	for _, id := range ids {
		sec, err := f.CredentialOpen(ctx, id)
		if err != nil {
			return nil, err
		}
		out[id] = sec
	}
	return out, nil
}

func (f *fakeHoldStore) CredentialOpen(context.Context, int64) (store.Secret, error) {
	f.opens.Add(1)
	if f.fail.Load() {
		return store.Secret{}, errors.New("database gone")
	}
	return store.Secret{Kind: testum.AuthPassword, Secret: []byte("hunter2"), Passphrase: []byte("pp")}, nil
}

// TestRunHoldLingersThenZeroes: the hold of a run outlives a gap between
// its hosts while one is still in it or the linger runs; after the last
// host left and the linger passed, the secret is zeroed, the run's parsed
// keys are forgotten, and the next host opens the credential anew. A
// failed open is not kept.
func TestRunHoldLingersThenZeroes(t *testing.T) {
	ctx := context.Background()
	f := &fakeHoldStore{}
	signers := newSignerCache()
	h := newRunHolds(f, signers)
	h.linger = time.Hour
	run := uuid.New()

	a := h.take(run)
	sec, err := a.CredentialOpen(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signers.get(ctx, run, encryptedKey(t, ""), nil); err != nil {
		t.Fatal(err)
	}
	a.release()
	b := h.take(run) // within the linger: the same hold
	if _, err := b.CredentialOpen(ctx, 7); err != nil || f.opens.Load() != 1 {
		t.Fatalf("second host of the run: err %v, %d opens, want the kept secret", err, f.opens.Load())
	}
	if zeroed(sec.Secret) {
		t.Fatal("secret zeroed while a host of the run holds it")
	}

	h.mu.Lock()
	h.linger = time.Millisecond
	h.mu.Unlock()
	b.release()
	for i := 0; h.held() != 0; i++ {
		if i > 10000 {
			t.Fatal("the hold was never dropped after its linger")
		}
		time.Sleep(time.Millisecond) // polling the drop, bounded
	}
	if !zeroed(sec.Secret) || !zeroed(sec.Passphrase) {
		t.Error("the secret was not zeroed when the run's hold was dropped")
	}
	if signers.size() != 0 {
		t.Error("the run's parsed key outlived its hold")
	}

	c := h.take(run)
	defer c.release()
	f.fail.Store(true)
	if _, err := c.CredentialOpen(ctx, 7); err == nil {
		t.Fatal("open against a failing store succeeded")
	}
	f.fail.Store(false)
	if _, err := c.CredentialOpen(ctx, 7); err != nil || f.opens.Load() != 3 {
		t.Fatalf("after a failed open: err %v, %d opens, want a new read", err, f.opens.Load())
	}
}

// TestRunHoldKeepsPinnedKeys: a host key pinned on first contact by one
// host of the run is in the kept row the next host reads, so the hop is no
// first contact for it.
func TestRunHoldKeepsPinnedKeys(t *testing.T) {
	ctx := context.Background()
	h := newRunHolds(&fakeHoldStore{}, nil)
	r := h.take(uuid.New())
	defer r.release()
	if p, err := r.Platform(ctx, 1); err != nil || p.HostKey != "" {
		t.Fatalf("platform 1: %+v %v", p, err)
	}
	signer, err := ssh.ParsePrivateKey(encryptedKey(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	r.pinned([]sshx.Hop{{ID: 1, HostKey: signer.PublicKey()}})
	p, err := r.Platform(ctx, 1)
	if err != nil || p.HostKey == "" || p.HostKeyFingerprint != sshx.Fingerprint(signer.PublicKey()) {
		t.Errorf("after the pin: %+v %v, want the pinned key", p, err)
	}
}

// twoCredsStore serves two platforms of a run with credentials 7 and 8,
// of which 8 does not open; it counts reads and keeps what it handed out.
type twoCredsStore struct {
	many, alone atomic.Int64
	mu          sync.Mutex
	handed      []store.Secret
}

func (f *twoCredsStore) RunPlatforms(context.Context, uuid.UUID) ([]testum.Platform, error) {
	seven, eight := int64(7), int64(8)
	return []testum.Platform{{ID: 1, CredentialID: &seven}, {ID: 2, CredentialID: &eight}}, nil
}

func (f *twoCredsStore) Platform(_ context.Context, id int64) (testum.Platform, error) {
	return testum.Platform{ID: id}, nil
}

func (f *twoCredsStore) CredentialsOpen(_ context.Context, ids []int64) (map[int64]store.Secret, error) {
	f.many.Add(1)
	out := map[int64]store.Secret{}
	for _, id := range ids {
		if id == 7 {
			sec := store.Secret{Kind: testum.AuthPassword, Secret: []byte("hunter2")}
			f.mu.Lock()
			f.handed = append(f.handed, sec)
			f.mu.Unlock()
			out[id] = sec
		}
	}
	return out, nil
}

func (f *twoCredsStore) CredentialOpen(_ context.Context, id int64) (store.Secret, error) {
	f.alone.Add(1)
	return store.Secret{}, fmt.Errorf("credential %d: cannot decrypt", id)
}

// The first credential asked for brings every credential of the run's
// platforms in one read; one that did not open there is read alone (and
// its error reported) each time it is asked for; what was read together is
// zeroed with the hold, asked for or not.
func TestRunHoldReadsTheRunsCredentialsTogether(t *testing.T) {
	ctx := context.Background()
	f := &twoCredsStore{}
	h := newRunHolds(f, nil)
	r := h.take(uuid.New())
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if sec, err := r.CredentialOpen(ctx, 7); err != nil || string(sec.Secret) != "hunter2" {
				t.Errorf("credential 7: %q %v", sec.Secret, err)
			}
		}()
	}
	wg.Wait()
	for range 2 {
		if _, err := r.CredentialOpen(ctx, 8); err == nil || !strings.Contains(err.Error(), "cannot decrypt") {
			t.Errorf("credential 8 that does not open: %v", err)
		}
	}
	if many, alone := f.many.Load(), f.alone.Load(); many != 1 || alone != 2 {
		t.Errorf("%d reads together and %d alone, want 1 and 2 (credential 8, each time)", many, alone)
	}
	h.dropAll()
	for _, sec := range f.handed {
		if !zeroed(sec.Secret) {
			t.Error("a credential read with the run's was not zeroed with the hold")
		}
	}
}
