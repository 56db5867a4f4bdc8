package platforms

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/inventory"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// Import brings a fleet in from an OpenSSH client config or an Ansible
// inventory. Every entry gets the same login secret (a password, a
// private key or a stored credential), unless the platform exists already
// or the inventory gives the host its own ansible_password (or
// ansible_ssh_pass), which then becomes that platform's password, encrypted
// like any other; with no secret given, entries without one are rejected.
// Ansible groups become labels (group=true); other variables become labels
// only when named in LabelsFromVars, and never one whose name looks secret
// (pass, secret, token, key): such a name refuses the import. Every label
// is validated as a platform's.
type Import struct {
	Format       string // ssh_config, ansible_ini, ansible_yaml, or "" to detect
	Content      string
	Username     string // for entries without User / ansible_user
	Secret       Secret
	CredentialID *int64
	Labels       map[string]string // added to every entry
	// LabelsFromVars names the inventory variables that become labels.
	LabelsFromVars []string
}

// ImportItem says what happened to one entry.
type ImportItem struct {
	Name       string
	Line       int
	Result     string // created, skipped, rejected
	Reason     string
	PlatformID int64
}

const maxImportBytes = 4 << 20

// Import creates the platforms of an inventory, in one transaction, and
// says what became of each entry.
func (s *Service) Import(ctx context.Context, by auth.Actor, req Import) (created int, items []ImportItem, err error) {
	if strings.TrimSpace(req.Content) == "" {
		return 0, nil, testum.Invalid("content is empty: paste an ssh_config or an Ansible inventory")
	}
	if len(req.Content) > maxImportBytes {
		return 0, nil, testum.Invalid("content is larger than %d bytes", maxImportBytes)
	}
	switch req.Format {
	case "", "ssh_config", "ansible_ini", "ansible_yaml":
	default:
		return 0, nil, testum.Invalid("format %q: want ssh_config, ansible_ini, ansible_yaml or nothing to detect it", req.Format)
	}
	for k, v := range req.Labels {
		if err := ValidLabel(k, v); err != nil {
			return 0, nil, err
		}
	}
	for _, name := range req.LabelsFromVars {
		if inventory.LooksSecret(name) {
			return 0, nil, &testum.Error{Code: testum.CodeInvalid, Reason: "secret_label",
				Message: fmt.Sprintf("labels_from_vars: %q looks like a secret (pass, secret, token, key): it cannot become a label every admin reads", name)}
		}
		if err := ValidLabel(name, ""); err != nil {
			return 0, nil, err
		}
	}
	parsed, err := inventory.Parse(req.Format, strings.NewReader(req.Content))
	if err != nil {
		return 0, nil, testum.Invalid("cannot read the content: %v", err)
	}
	// The shared secret is validated once, before any entry. Without one,
	// only entries with their own ansible_password are imported.
	noSecret := req.Secret.Password == nil && req.Secret.PrivateKey == nil && req.CredentialID == nil
	base := store.NewPlatform{AuthMethod: testum.AuthPassword}
	if noSecret {
		if m := strings.TrimSpace(req.Secret.AuthMethod); m != "" && !strings.EqualFold(m, string(testum.AuthPassword)) {
			return 0, nil, testum.Invalid("auth_method %s needs its private_key or a credential_id", m)
		}
	} else {
		if base.AuthMethod, base.Secret, err = login(req.Secret, req.CredentialID); err != nil {
			return 0, nil, err
		}
		base.CredentialID = req.CredentialID
	}
	for _, p := range parsed.Problems {
		items = append(items, ImportItem{Name: p.Name, Line: p.Line, Result: "rejected", Reason: p.Reason})
	}
	err = s.st.InTx(ctx, func(tx Tx) error {
		byName, _, err := tx.PlatformNames(ctx)
		if err != nil {
			return err
		}
		if base.CredentialID != nil {
			if err := checkRefs(ctx, tx, store.NewPlatform{CredentialID: base.CredentialID, AuthMethod: base.AuthMethod}); err != nil {
				return err
			}
		}
		// A shared secret is stored once, as a named credential, and
		// referenced by every imported platform.
		credID := base.CredentialID
		jumps := map[string]string{}
		for _, e := range parsed.Entries {
			it := ImportItem{Name: e.Name, Line: e.Line}
			np := base
			np.Name, np.Host, np.Port, np.Username = e.Name, e.Host, 22, e.User
			if e.Port != 0 {
				np.Port = e.Port
			}
			if np.Username == "" {
				np.Username = req.Username
			}
			np.Labels = map[string]string{}
			for k, v := range req.Labels {
				np.Labels[k] = v
			}
			for k, v := range e.Labels {
				np.Labels[k] = v
			}
			for _, k := range req.LabelsFromVars {
				if v, ok := e.Vars[k]; ok {
					np.Labels[k] = v
				}
			}
			switch {
			case byName[e.Name] != 0:
				it.Result, it.Reason = "skipped", "a platform with this name exists"
			case ValidName("platform", np.Name) != nil:
				it.Result, it.Reason = "rejected", ValidName("platform", np.Name).Error()
			case validHost(np.Host) != nil:
				it.Result, it.Reason = "rejected", validHost(np.Host).Error()
			case s.checkTarget(np.Host) != nil:
				it.Result, it.Reason = "rejected", s.checkTarget(np.Host).Error()
			case np.Username == "":
				it.Result, it.Reason = "rejected", "no user: give User in the file or username in the request"
			case validUser(np.Username) != nil:
				it.Result, it.Reason = "rejected", validUser(np.Username).Error()
			case labelsInvalid(np.Labels) != nil:
				it.Result, it.Reason = "rejected", labelsInvalid(np.Labels).Error()
			case noSecret && e.Password == "":
				it.Result, it.Reason = "rejected", "no secret: give password, private_key or credential_id in the request, or ansible_password in the inventory"
			}
			if it.Result == "" {
				if e.Password != "" {
					// The host's own password, as Ansible would use it: an
					// inline credential of this platform alone.
					np.AuthMethod, np.CredentialID = testum.AuthPassword, nil
					np.Secret = &store.NewSecret{Kind: testum.AuthPassword, Secret: []byte(e.Password)}
				} else {
					if credID == nil && np.Secret != nil {
						sec := *np.Secret
						sec.Name = "import-" + uuid.NewString()[:8]
						cr, err := tx.CredentialCreate(ctx, sec)
						if err != nil {
							return err
						}
						credID = &cr.ID
					}
					np.Secret, np.CredentialID = nil, credID
				}
				p, err := tx.PlatformCreate(ctx, np)
				if err != nil {
					return err
				}
				byName[p.Name] = p.ID
				it.Result, it.PlatformID = "created", p.ID
				created++
				if e.Jump != "" {
					jumps[p.Name] = e.Jump
				}
			}
			items = append(items, it)
		}
		// Jump hosts are linked once every entry exists; a jump that names
		// no platform is reported, and the platform stays direct.
		for name, jump := range jumps {
			alias := jump
			if i := strings.LastIndex(alias, "@"); i >= 0 {
				alias = alias[i+1:]
			}
			if i := strings.Index(alias, ":"); i >= 0 {
				alias = alias[:i]
			}
			jid, ok := byName[alias]
			if !ok {
				items = append(items, ImportItem{Name: name, Result: "created", Reason: fmt.Sprintf("jump host %q is not a platform: connect directly or add it and set jump_platform_id", jump), PlatformID: byName[name]})
				continue
			}
			p, err := tx.PlatformForUpdate(ctx, byName[name])
			if err != nil {
				return err
			}
			upd := store.NewPlatform{Name: p.Name, Host: p.Host, Port: p.Port, Username: p.Username, AuthMethod: p.AuthMethod,
				CredentialID: p.CredentialID, Labels: p.Labels, JumpPlatformID: &jid, HostKeyPolicy: p.HostKeyPolicy}
			if _, err := tx.PlatformUpdate(ctx, p.ID, upd); err != nil {
				return err
			}
		}
		return tx.Audit(ctx, by.Entry("platform.import", "platforms", map[string]any{"created": created,
			"entries": len(parsed.Entries), "problems": len(parsed.Problems), "format": req.Format}))
	})
	if err != nil {
		return 0, nil, err
	}
	return created, items, nil
}
