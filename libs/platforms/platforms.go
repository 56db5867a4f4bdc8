// Package platforms manages the hosts testum logs in to: creating and
// replacing platforms with their login secrets, importing a fleet from an
// OpenSSH config or an Ansible inventory, stored credentials and host key
// acceptance. It knows nothing of HTTP: the gateway decodes requests into
// its types.
package platforms

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// Store is what the service reads outside a transaction, and the way in.
type Store interface {
	PlatformHostKeys(ctx context.Context, id int64) (store.HostKeys, error)
	CredentialByName(ctx context.Context, name string) (testum.Credential, error)
	SSHKeysByIDs(ctx context.Context, ids []int64) ([]store.SSHKey, error)
	InTx(ctx context.Context, fn func(tx Tx) error) error
}

// Tx is what the service does inside a transaction.
type Tx interface {
	PlatformCreate(ctx context.Context, np store.NewPlatform) (testum.Platform, error)
	PlatformForUpdate(ctx context.Context, id int64) (testum.Platform, error)
	PlatformUpdate(ctx context.Context, id int64, np store.NewPlatform) (testum.Platform, error)
	PlatformDelete(ctx context.Context, id int64) (testum.Platform, error)
	PlatformsByIDs(ctx context.Context, ids []int64) ([]testum.Platform, error)
	PlatformNames(ctx context.Context) (map[string]int64, []string, error)
	PlatformAcceptHostKey(ctx context.Context, id int64, fingerprint string) (bool, error)
	Credential(ctx context.Context, id int64) (testum.Credential, error)
	CredentialCreate(ctx context.Context, ns store.NewSecret) (testum.Credential, error)
	CredentialDelete(ctx context.Context, id int64) (testum.Credential, error)
	SSHKeyCreate(ctx context.Context, name, publicKey, fingerprint, by string) (store.SSHKey, error)
	SSHKeyDelete(ctx context.Context, id int64) (store.SSHKey, error)
	Audit(ctx context.Context, e testum.AuditEntry) error
}

// Postgres adapts the store to Store.
func Postgres(st *store.Store) Store { return pgStore{st} }

type pgStore struct{ *store.Store }

func (s pgStore) InTx(ctx context.Context, fn func(tx Tx) error) error {
	return s.Store.InTx(ctx, func(tx *store.Tx) error { return fn(tx) })
}

// Config tunes the service. Zero fields take defaults.
type Config struct {
	TargetDeny     sshx.DenyList        // address ranges no platform may have (nil: sshx.DefaultDeny)
	ConnectTimeout time.Duration        // SSH connect timeout of connection tests (default 10s)
	HostKeyPolicy  testum.HostKeyPolicy // the global host key policy (default auto_add)
	Fleet          Fleet                // for connection tests; nil: Test is unavailable
	Logger         *slog.Logger
}

// CheckAndSetDefaults fills zero fields.
func (c *Config) CheckAndSetDefaults() error {
	if c.TargetDeny == nil {
		c.TargetDeny = sshx.DefaultDeny()
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = sshx.DefaultConnectTimeout
	}
	if c.HostKeyPolicy == "" {
		c.HostKeyPolicy = testum.HostKeyAutoAdd
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Service manages platforms and their credentials.
type Service struct {
	cfg Config
	st  Store
}

// New builds the service.
func New(cfg Config, st Store) (*Service, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, st: st}, nil
}

// Target is how the audit log names a platform.
func Target(p testum.Platform) string { return "platform:" + p.Name }

// Create validates and stores a new platform with its login.
func (s *Service) Create(ctx context.Context, by auth.Actor, req Request) (testum.Platform, error) {
	np, err := newPlatform(req)
	if err != nil {
		return testum.Platform{}, err
	}
	if err := s.checkTarget(np.Host); err != nil {
		return testum.Platform{}, err
	}
	var p testum.Platform
	err = s.st.InTx(ctx, func(tx Tx) error {
		if err := checkRefs(ctx, tx, np); err != nil {
			return err
		}
		var err error
		if p, err = tx.PlatformCreate(ctx, np); err != nil {
			return err
		}
		return tx.Audit(ctx, by.Entry("platform.create", Target(p), map[string]any{
			"host": p.Host, "port": p.Port, "username": p.Username, "auth_method": p.AuthMethod, "labels": p.Labels,
		}))
	})
	return p, err
}

// checkRefs verifies that referenced credential and jump host exist and
// fit, with a clear error rather than a foreign-key failure.
func checkRefs(ctx context.Context, tx Tx, np store.NewPlatform) error {
	if np.CredentialID != nil {
		cr, err := tx.Credential(ctx, *np.CredentialID)
		if err != nil {
			if store.IsNotFound(err) {
				return testum.Invalid("credential_id %d does not exist", *np.CredentialID)
			}
			return err
		}
		if cr.Kind != np.AuthMethod {
			return testum.Invalid("credential %d holds a %s, but auth_method is %s", cr.ID, cr.Kind, np.AuthMethod)
		}
	}
	if np.JumpPlatformID != nil {
		ps, err := tx.PlatformsByIDs(ctx, []int64{*np.JumpPlatformID})
		if err != nil {
			return err
		}
		if len(ps) == 0 {
			return testum.Invalid("jump_platform_id %d does not exist", *np.JumpPlatformID)
		}
	}
	return nil
}

// Update replaces a platform's settings. The secret may be left out to
// keep the current one.
func (s *Service) Update(ctx context.Context, by auth.Actor, id int64, req Request) (testum.Platform, error) {
	keep := req.Secret.Password == nil && req.Secret.PrivateKey == nil && req.CredentialID == nil
	var p testum.Platform
	err := s.st.InTx(ctx, func(tx Tx) error {
		old, err := tx.PlatformForUpdate(ctx, id)
		if err != nil {
			return err
		}
		if keep {
			if req.Secret.AuthMethod != "" && !strings.EqualFold(strings.TrimSpace(req.Secret.AuthMethod), string(old.AuthMethod)) {
				return testum.Invalid("changing auth_method needs the new password, private_key or credential_id")
			}
			req.Secret.AuthMethod = string(old.AuthMethod)
			req.CredentialID = old.CredentialID // validated as a reference, kept as is
		}
		np, err := newPlatform(req)
		if err != nil {
			return err
		}
		if err := s.checkTarget(np.Host); err != nil {
			return err
		}
		if np.JumpPlatformID != nil && *np.JumpPlatformID == id {
			return testum.Invalid("a platform cannot be its own jump host")
		}
		if keep {
			if err := checkSecretStays(ctx, tx, old, np); err != nil {
				return err
			}
		}
		if !keep {
			if err := checkRefs(ctx, tx, np); err != nil {
				return err
			}
		} else {
			np.CredentialID = nil
			if err := checkRefs(ctx, tx, store.NewPlatform{JumpPlatformID: np.JumpPlatformID}); err != nil {
				return err
			}
		}
		if p, err = tx.PlatformUpdate(ctx, id, np); err != nil {
			return err
		}
		return tx.Audit(ctx, by.Entry("platform.update", Target(p), map[string]any{
			"host": p.Host, "port": p.Port, "username": p.Username, "auth_method": p.AuthMethod, "labels": p.Labels,
			"secret_changed": !keep,
		}))
	})
	return p, err
}

// checkSecretStays refuses to move a password to another host, port or user
// without the password being given again: it was given for that login, and
// password authentication hands it to whoever answers there. A named
// credential is shared on purpose and may follow; a key proves itself with a
// signature and reveals nothing to the new host.
func checkSecretStays(ctx context.Context, tx Tx, old testum.Platform, np store.NewPlatform) error {
	if old.AuthMethod != testum.AuthPassword || old.CredentialID == nil {
		return nil
	}
	if np.Host == old.Host && np.Port == old.Port && np.Username == old.Username {
		return nil
	}
	cr, err := tx.Credential(ctx, *old.CredentialID)
	if err != nil {
		return err
	}
	if cr.Name != "" {
		return nil
	}
	return &testum.Error{Code: testum.CodeInvalid, Reason: "password_required",
		Message: "changing host, port or username of a password platform needs the password again (or a credential_id)"}
}

// Delete deletes platform id.
func (s *Service) Delete(ctx context.Context, by auth.Actor, id int64) error {
	return s.st.InTx(ctx, func(tx Tx) error {
		p, err := tx.PlatformDelete(ctx, id)
		if err != nil {
			return err
		}
		return tx.Audit(ctx, by.Entry("platform.delete", Target(p), map[string]any{"id": id}))
	})
}

// AcceptHostKey pins the key the host offered. fingerprint is the one the
// administrator checked, so a key that changed again in between is not
// accepted blindly.
func (s *Service) AcceptHostKey(ctx context.Context, by auth.Actor, id int64, fingerprint string) error {
	hk, err := s.st.PlatformHostKeys(ctx, id)
	if err != nil {
		return err
	}
	if hk.OfferedFingerprint == "" {
		return testum.Conflict("the host has offered no other key to accept")
	}
	if fingerprint == "" {
		return testum.Invalid("fingerprint is required: the offered key's fingerprint (%s) as you checked it", hk.OfferedFingerprint)
	}
	return s.st.InTx(ctx, func(tx Tx) error {
		ok, err := tx.PlatformAcceptHostKey(ctx, id, fingerprint)
		if err != nil {
			return err
		}
		if !ok {
			return testum.Conflict("the offered key is not %s (it is %s now)", fingerprint, hk.OfferedFingerprint)
		}
		return tx.Audit(ctx, by.Entry("platform.host_key_accept", fmt.Sprintf("platform:%d", id), map[string]any{
			"old": hk.PinnedFingerprint, "new": fingerprint}))
	})
}

// CreateCredential stores a named, reusable login secret.
func (s *Service) CreateCredential(ctx context.Context, by auth.Actor, name string, sec Secret) (testum.Credential, error) {
	name = strings.TrimSpace(name)
	if err := ValidName("credential", name); err != nil {
		return testum.Credential{}, err
	}
	_, ns, err := login(sec, nil)
	if err != nil {
		return testum.Credential{}, err
	}
	ns.Name = name
	var cr testum.Credential
	err = s.st.InTx(ctx, func(tx Tx) error {
		if cr, err = tx.CredentialCreate(ctx, *ns); err != nil {
			return err
		}
		return tx.Audit(ctx, by.Entry("credential.create", "credential:"+cr.Name, map[string]any{"kind": cr.Kind, "fingerprint": cr.Fingerprint}))
	})
	return cr, err
}

// DeleteCredential deletes credential id.
func (s *Service) DeleteCredential(ctx context.Context, by auth.Actor, id int64) error {
	return s.st.InTx(ctx, func(tx Tx) error {
		cr, err := tx.CredentialDelete(ctx, id)
		if err != nil {
			return err
		}
		return tx.Audit(ctx, by.Entry("credential.delete", "credential:"+cr.Name, nil))
	})
}
