package platforms

import (
	"net"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

var (
	nameRE      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	hostLabelRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$`)
	userRE      = regexp.MustCompile(`^[A-Za-z0-9._][A-Za-z0-9._@-]{0,63}\$?$`)
	labelKeyRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$`)
	labelValRE  = regexp.MustCompile(`^[A-Za-z0-9._/:@-]{0,128}$`)
)

// ValidName checks the name of a platform, credential or key (kind says
// which, for the message).
func ValidName(kind, s string) error {
	if !nameRE.MatchString(s) {
		if s == "" {
			return testum.Invalid("%s name is required", kind)
		}
		return testum.Invalid("%s name %q: use letters, digits, '.', '_' and '-' (at most 128, starting with a letter or digit)", kind, s)
	}
	return nil
}

// validHost accepts an IP address or a DNS name.
func validHost(s string) error {
	if s == "" {
		return testum.Invalid("host is required")
	}
	if net.ParseIP(strings.Trim(s, "[]")) != nil {
		return nil
	}
	if len(s) > 253 || strings.ContainsAny(s, " \t\r\n") {
		return testum.Invalid("host %q is not a valid host name or IP address (no spaces allowed)", s)
	}
	for _, l := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if !hostLabelRE.MatchString(l) {
			return testum.Invalid("host %q is not a valid host name or IP address", s)
		}
	}
	return nil
}

func validUser(s string) error {
	if !userRE.MatchString(s) {
		if s == "" {
			return testum.Invalid("username is required")
		}
		return testum.Invalid("username %q is not a valid user name", s)
	}
	return nil
}

func validPort(p int) error {
	if p < 1 || p > 65535 {
		return testum.Invalid("port %d out of range: want 1 to 65535", p)
	}
	return nil
}

// ValidLabel checks one label, for every way labels come in (the API, an
// import).
func ValidLabel(k, v string) error {
	if !labelKeyRE.MatchString(k) {
		return testum.Invalid("label key %q: use letters, digits, '.', '_', '/' and '-'", k)
	}
	if !labelValRE.MatchString(v) {
		return testum.Invalid("label %s=%q: values use letters, digits and . _ / : @ - only", k, v)
	}
	return nil
}

// labelsInvalid checks labels in a fixed order, so the reason given for
// the first bad one is stable.
func labelsInvalid(labels map[string]string) error {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := ValidLabel(k, labels[k]); err != nil {
			return err
		}
	}
	return nil
}

// Secret is a login secret as a client gives it: a password, or a private
// key with its passphrase.
type Secret struct {
	AuthMethod string // password or private_key; "" to infer it from what is given
	Password   *string
	PrivateKey *string
	Passphrase *string
}

// method is the auth method asked for, or inferred from what is given.
func (s Secret) method() testum.AuthMethod {
	m := testum.AuthMethod(strings.ToLower(strings.TrimSpace(s.AuthMethod)))
	if m == "" {
		switch {
		case s.PrivateKey != nil:
			m = testum.AuthPrivateKey
		case s.Password != nil:
			m = testum.AuthPassword
		}
	}
	return m
}

// login validates how a platform logs in: a stored credential (by id) or
// a secret given inline, never both. The secret is checked here (a key
// must parse, with its passphrase) so that a login that cannot work is
// refused at once.
func login(sec Secret, credentialID *int64) (testum.AuthMethod, *store.NewSecret, error) {
	method := sec.method()
	given := 0
	for _, set := range []bool{sec.Password != nil, sec.PrivateKey != nil, credentialID != nil} {
		if set {
			given++
		}
	}
	if given > 1 {
		return method, nil, testum.Invalid("give only one of password, private_key and credential_id")
	}
	if credentialID != nil {
		if method != testum.AuthPassword && method != testum.AuthPrivateKey {
			return method, nil, testum.Invalid("auth_method %q: want password or private_key", sec.AuthMethod)
		}
		return method, nil, nil
	}
	switch method {
	case testum.AuthPassword:
		if sec.Password == nil || *sec.Password == "" {
			return method, nil, testum.Invalid("auth_method password needs a non-empty password (or a credential_id)")
		}
		return method, &store.NewSecret{Kind: method, Secret: []byte(*sec.Password)}, nil
	case testum.AuthPrivateKey:
		if sec.PrivateKey == nil || strings.TrimSpace(*sec.PrivateKey) == "" {
			return method, nil, testum.Invalid("auth_method private_key needs a private_key (or a credential_id)")
		}
		var pass []byte
		if sec.Passphrase != nil {
			pass = []byte(*sec.Passphrase)
		}
		signer, err := sshx.ParsePrivateKey([]byte(*sec.PrivateKey), pass)
		if err != nil {
			return method, nil, testum.Invalid("private_key: %v", err)
		}
		return method, &store.NewSecret{
			Kind: method, Secret: []byte(*sec.PrivateKey), Passphrase: pass,
			PublicKey:   strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))),
			Fingerprint: sshx.Fingerprint(signer.PublicKey()),
		}, nil
	case "":
		return method, nil, testum.Invalid("auth_method is required: password or private_key")
	default:
		return method, nil, testum.Invalid("auth_method %q: want password or private_key", sec.AuthMethod)
	}
}

// Request is a platform as a client gives it, to create or to replace one.
type Request struct {
	Name           string
	Host           string
	Port           *int // 22 when nil
	Username       string
	Secret         Secret
	CredentialID   *int64
	Labels         map[string]string
	JumpPlatformID *int64
	HostKeyPolicy  string // "" for the global policy
}

// newPlatform validates a platform request and turns it into what the store
// creates.
func newPlatform(req Request) (store.NewPlatform, error) {
	np := store.NewPlatform{
		Name: strings.TrimSpace(req.Name), Host: strings.TrimSpace(req.Host), Port: 22,
		Username: strings.TrimSpace(req.Username), JumpPlatformID: req.JumpPlatformID,
		HostKeyPolicy: testum.HostKeyPolicy(strings.ToLower(strings.TrimSpace(req.HostKeyPolicy))),
	}
	if req.Port != nil {
		np.Port = *req.Port
	}
	if err := ValidName("platform", np.Name); err != nil {
		return np, err
	}
	if err := validHost(np.Host); err != nil {
		return np, err
	}
	if err := validPort(np.Port); err != nil {
		return np, err
	}
	if err := validUser(np.Username); err != nil {
		return np, err
	}
	if np.HostKeyPolicy != "" && !np.HostKeyPolicy.Valid() {
		return np, testum.Invalid("host_key_policy %q: want auto_add or strict (or leave it out for the global policy)", req.HostKeyPolicy)
	}
	np.Labels = map[string]string{}
	for k, v := range req.Labels {
		if err := ValidLabel(k, v); err != nil {
			return np, err
		}
		np.Labels[k] = v
	}
	var err error
	np.AuthMethod, np.Secret, err = login(req.Secret, req.CredentialID)
	if err != nil {
		return np, err
	}
	np.CredentialID = req.CredentialID
	return np, nil
}
