package platforms

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// IdentityCredential names testum's own key pair, generated once per
// installation: its public half deploys like any key, so a fleet moves
// from passwords to keys by deploying it and pointing platforms at it.
const IdentityCredential = "testum-identity"

// newIdentity generates testum's own key pair, ready to store.
func newIdentity() (store.NewSecret, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return store.NewSecret{}, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "testum")
	if err != nil {
		return store.NewSecret{}, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return store.NewSecret{}, err
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " testum"
	return store.NewSecret{Name: IdentityCredential, Kind: testum.AuthPrivateKey, Secret: pem.EncodeToMemory(block),
		PublicKey: pub, Fingerprint: sshx.Fingerprint(signer.PublicKey())}, nil
}

// ensureIdentity returns testum's key pair, creating it when there is none;
// entry is the creation's audit entry, written in its transaction.
// Concurrent callers (gateways starting together) end up with the same one.
func (s *Service) ensureIdentity(ctx context.Context, entry func(cr testum.Credential) testum.AuditEntry) (testum.Credential, bool, error) {
	cr, err := s.st.CredentialByName(ctx, IdentityCredential)
	if err == nil || !store.IsNotFound(err) {
		return cr, false, err
	}
	ns, err := newIdentity()
	if err != nil {
		return cr, false, err
	}
	err = s.st.InTx(ctx, func(tx Tx) error {
		if cr, err = tx.CredentialCreate(ctx, ns); err != nil {
			return err
		}
		return tx.Audit(ctx, entry(cr))
	})
	if testum.CodeOf(err) == testum.CodeConflict { // another gateway made it first
		cr, err = s.st.CredentialByName(ctx, IdentityCredential)
		return cr, false, err
	}
	return cr, err == nil, err
}

// EnsureIdentity creates testum's own key pair at start when there is none;
// it reports whether it did.
func (s *Service) EnsureIdentity(ctx context.Context) (bool, error) {
	_, created, err := s.ensureIdentity(ctx, func(cr testum.Credential) testum.AuditEntry {
		return testum.AuditEntry{Actor: "testum", Action: "credential.create", Target: "credential:" + IdentityCredential,
			Details: map[string]any{"fingerprint": cr.Fingerprint, "bootstrap": true}, Outcome: testum.AuditOK}
	})
	return created, err
}

// Identity returns testum's key pair for a state-changing request,
// creating it (audited as the actor's) when it is missing; it reports
// whether it did.
func (s *Service) Identity(ctx context.Context, by auth.Actor) (testum.Credential, bool, error) {
	return s.ensureIdentity(ctx, func(cr testum.Credential) testum.AuditEntry {
		return by.Entry("credential.create", "credential:"+IdentityCredential, map[string]any{"fingerprint": cr.Fingerprint})
	})
}
