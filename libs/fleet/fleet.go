// Package fleet turns stored platforms into SSH targets: address, login,
// opened credential, pinned host key and jump chain. The executor dials
// them to run commands; the gateway dials them to test a platform.
package fleet

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// MaxJumps bounds a jump chain (and so a loop of jump hosts).
const MaxJumps = 8

// Target builds the SSH target of platform p with its jump chain. policy is
// the global host key policy, used where the platform has none.
func Target(ctx context.Context, st *store.Store, p testum.Platform, policy testum.HostKeyPolicy) (sshx.Target, error) {
	return target(ctx, st, p, policy, 0)
}

func target(ctx context.Context, st *store.Store, p testum.Platform, policy testum.HostKeyPolicy, depth int) (sshx.Target, error) {
	if depth > MaxJumps {
		return sshx.Target{}, fmt.Errorf("jump host chain longer than %d (a loop?)", MaxJumps)
	}
	pol := p.HostKeyPolicy
	if pol == "" {
		pol = policy
	}
	tgt := sshx.Target{
		Addr:    net.JoinHostPort(p.Host, strconv.Itoa(p.Port)),
		User:    p.Username,
		HostKey: sshx.HostKeyCheck{Policy: pol},
	}
	if p.HostKey != "" {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(p.HostKey))
		if err != nil {
			return tgt, fmt.Errorf("platform %s: stored host key unreadable: %w", p.Name, err)
		}
		tgt.HostKey.Pinned = k
	}
	if p.CredentialID == nil {
		return tgt, fmt.Errorf("platform %s has no credential", p.Name)
	}
	sec, err := st.CredentialOpen(ctx, *p.CredentialID)
	if err != nil {
		return tgt, fmt.Errorf("platform %s: %w", p.Name, err)
	}
	switch sec.Kind {
	case testum.AuthPassword:
		tgt.Password = string(sec.Secret)
	case testum.AuthPrivateKey:
		tgt.PrivateKey, tgt.Passphrase = sec.Secret, sec.Passphrase
	}
	if p.JumpPlatformID != nil {
		jp, err := st.Platform(ctx, *p.JumpPlatformID)
		if err != nil {
			return tgt, fmt.Errorf("platform %s: jump host: %w", p.Name, err)
		}
		jt, err := target(ctx, st, jp, policy, depth+1)
		if err != nil {
			return tgt, err
		}
		tgt.Jump = &jt
	}
	return tgt, nil
}
