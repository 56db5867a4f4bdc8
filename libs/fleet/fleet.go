// Package fleet turns stored platforms into SSH targets: address, login,
// opened credential, pinned host key and jump chain. The executor dials
// them to run commands; the gateway dials them to test a platform.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// MaxJumps bounds a jump chain (and so a loop of jump hosts).
const MaxJumps = 8

// Source is what Target reads: the platforms of jump hosts and the opened
// credentials. *store.Store is one; the executor keeps a run's credentials.
type Source interface {
	Platform(ctx context.Context, id int64) (testum.Platform, error)
	CredentialOpen(ctx context.Context, id int64) (store.Secret, error)
}

// Target builds the SSH target of platform p with its jump chain. policy is
// the global host key policy, used where the platform has none.
func Target(ctx context.Context, st Source, p testum.Platform, policy testum.HostKeyPolicy) (sshx.Target, error) {
	return target(ctx, st, p, policy, 0)
}

func target(ctx context.Context, st Source, p testum.Platform, policy testum.HostKeyPolicy, depth int) (sshx.Target, error) {
	if depth > MaxJumps {
		return sshx.Target{}, fmt.Errorf("jump host chain longer than %d (a loop?)", MaxJumps)
	}
	pol := p.HostKeyPolicy
	if pol == "" {
		pol = policy
	}
	tgt := sshx.Target{
		ID:      p.ID, // every hop, so its key is pinned and offered on its own platform
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

// PinFirstContacts pins, on each hop's own platform, the key that a first
// contact accepted under auto_add: jump hosts as well as the target, so a
// bastion is checked on every later contact exactly like a target. If
// another contact pinned a different key meanwhile, the error names the hop
// and the connection must not be used.
func PinFirstContacts(ctx context.Context, st *store.Store, hops []sshx.Hop) (pinned []sshx.Hop, err error) {
	for i, h := range hops {
		if !h.FirstContact || h.ID == 0 {
			continue
		}
		key := authorizedKey(h.HostKey)
		fp := sshx.Fingerprint(h.HostKey)
		ok, err := st.PlatformPinHostKey(ctx, h.ID, key, fp)
		if err != nil {
			return pinned, fmt.Errorf("%spinning the host key: %w", hopName(hops, i), err)
		}
		if ok {
			pinned = append(pinned, h)
			continue
		}
		now, err := st.Platform(ctx, h.ID)
		if err != nil {
			return pinned, fmt.Errorf("%sre-reading the pinned host key: %w", hopName(hops, i), err)
		}
		if now.HostKey != key {
			return pinned, fmt.Errorf("%shost key %s differs from %s, pinned meanwhile by another contact",
				hopName(hops, i), fp, now.HostKeyFingerprint)
		}
	}
	return pinned, nil
}

func hopName(hops []sshx.Hop, i int) string {
	if i == len(hops)-1 {
		return ""
	}
	return "jump " + hops[i].Addr + ": "
}

// RecordOffered records, on the platform of the hop that failed, the key it
// presented when that key was rejected, so that an extended_admin sees it
// (GET …/host_key) and may accept it. It returns the id of that platform
// (0 when nothing was recorded).
func RecordOffered(ctx context.Context, st *store.Store, err error) (int64, error) {
	var de *sshx.DialError
	if !errors.As(err, &de) || de.Failure != sshx.HostKeyRejected || de.Offered == nil || de.HopID == 0 {
		return 0, nil
	}
	if err := st.PlatformOfferHostKey(ctx, de.HopID, authorizedKey(de.Offered), sshx.Fingerprint(de.Offered)); err != nil {
		return 0, err
	}
	return de.HopID, nil
}

// DescribeDialError is the message of a dial failure for operators: for a
// jump host it adds the platform to look at ("jump platform bastion").
func DescribeDialError(ctx context.Context, st *store.Store, err error) string {
	var de *sshx.DialError
	if !errors.As(err, &de) || de.Hop == "" || de.HopID == 0 {
		return err.Error()
	}
	jp, perr := st.Platform(ctx, de.HopID)
	if perr != nil {
		return err.Error()
	}
	msg := err.Error() + " (jump platform " + jp.Name + ")"
	if de.Failure == sshx.HostKeyRejected && de.Offered != nil {
		msg += "; the offered key is recorded on platform " + jp.Name + " to accept"
	}
	return msg
}

func authorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}
