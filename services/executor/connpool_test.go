package executor

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/sshx"
)

// TestTargetKey: a kept connection is only reused for exactly the target
// it was authenticated for.
func TestTargetKey(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pin, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	base := func() sshx.Target {
		return sshx.Target{Addr: "127.0.0.1:22", User: "ops", Password: "pw",
			Jump: &sshx.Target{Addr: "127.0.0.2:22", User: "jump", Password: "jpw"}}
	}
	ref := targetKey(1, base())
	if again := targetKey(1, base()); again != ref {
		t.Fatal("the same target gave two keys")
	}
	for name, change := range map[string]func(*sshx.Target) int64{
		"platform":      func(*sshx.Target) int64 { return 2 },
		"address":       func(t *sshx.Target) int64 { t.Addr = "127.0.0.3:22"; return 1 },
		"user":          func(t *sshx.Target) int64 { t.User = "root"; return 1 },
		"password":      func(t *sshx.Target) int64 { t.Password = "pw2"; return 1 },
		"private key":   func(t *sshx.Target) int64 { t.PrivateKey = []byte("k"); return 1 },
		"pinned key":    func(t *sshx.Target) int64 { t.HostKey.Pinned = pin; return 1 },
		"policy":        func(t *sshx.Target) int64 { t.HostKey.Policy = "strict"; return 1 },
		"jump password": func(t *sshx.Target) int64 { t.Jump.Password = "other"; return 1 },
		"jump platform": func(t *sshx.Target) int64 { t.Jump.ID = 9; return 1 },
		"jump pinned":   func(t *sshx.Target) int64 { t.Jump.HostKey.Pinned = pin; return 1 },
		"no jump":       func(t *sshx.Target) int64 { t.Jump = nil; return 1 },
		// Fields must not run into each other.
		"shifted bytes": func(t *sshx.Target) int64 { t.User, t.Password = "opsp", "w"; return 1 },
	} {
		tgt := base()
		if targetKey(change(&tgt), tgt) == ref {
			t.Errorf("%s: same key", name)
		}
	}
}
