package runs

import (
	"fmt"
	"sort"
	"strings"

	"github.com/testum/testum/libs/remote"
	"github.com/testum/testum/libs/testum"
)

// Bounds of what one run executes.
const (
	MaxCommandBytes = 64 << 10
	MaxScriptBytes  = 4 << 20
)

// Request is a run as a client asks for it: what to execute, where, and
// how. Pointers are nil when the client left the field out.
type Request struct {
	Command     string
	Script      *testum.Script
	Targets     Targets
	Parallelism *int
	Timeout     *int    // per host, seconds
	Batch       *string // a count ("10") or a share ("25%") of the hosts
	MaxFailures *string // likewise
	Deadline    *int    // whole run, seconds
	RetryLost   bool
	Dir         string
	Sudo        bool
	Env         map[string]EnvValue
}

// Targets select the hosts of a run: the union of every selector given.
type Targets struct {
	PlatformIDs []int64
	Labels      string // "role=web,env=prod": every pair must match
	Hosts       string // "web[01-20],!web05": platform names
}

// EnvValue is one value of a run's env; a secret one is stored sealed,
// apart from the spec, and masked wherever the run is shown.
type EnvValue struct {
	Value  string
	Secret bool
}

// Spec validates what a run executes and how, and fills the defaults.
func (s *Service) Spec(req Request) (testum.RunSpec, error) {
	spec := testum.RunSpec{RetryLost: req.RetryLost, Dir: req.Dir, Sudo: req.Sudo}
	spec.Env, spec.SecretEnv, spec.SecretEnvNames = splitEnv(req.Env)
	cmd := strings.TrimSpace(req.Command)
	switch {
	case cmd != "" && req.Script != nil:
		return spec, testum.Invalid("give either command or script, not both")
	case req.Script != nil:
		if len(req.Script.Body) > MaxScriptBytes {
			return spec, testum.Invalid("script is longer than %d bytes", MaxScriptBytes)
		}
		spec.Script = &testum.Script{Interpreter: strings.TrimSpace(req.Script.Interpreter), Body: req.Script.Body, Args: req.Script.Args}
		if spec.Script.Interpreter == "" {
			spec.Script.Interpreter = "sh"
		}
	case cmd == "":
		return spec, testum.Invalid("command is required and must not be empty")
	case len(req.Command) > MaxCommandBytes:
		return spec, testum.Invalid("command is longer than %d bytes: send a script instead", MaxCommandBytes)
	case strings.ContainsRune(req.Command, 0):
		return spec, testum.Invalid("command contains a NUL byte")
	default:
		spec.Command = req.Command
	}
	if err := remote.Check(spec); err != nil {
		return spec, testum.Invalid("%v", err)
	}

	spec.TimeoutSeconds = s.cfg.DefaultTimeout
	if req.Timeout != nil {
		if *req.Timeout <= 0 {
			return spec, testum.Invalid("timeout %d: want a positive number of seconds", *req.Timeout)
		}
		if *req.Timeout > s.cfg.MaxTimeout {
			return spec, testum.Invalid("timeout %d: at most %d seconds", *req.Timeout, s.cfg.MaxTimeout)
		}
		spec.TimeoutSeconds = *req.Timeout
	}
	spec.Parallelism = s.cfg.DefaultParallel
	if req.Parallelism != nil {
		if *req.Parallelism < 1 || *req.Parallelism > 100000 {
			return spec, testum.Invalid("parallelism %d: want 1 to 100000", *req.Parallelism)
		}
		spec.Parallelism = *req.Parallelism
	}
	if req.Deadline != nil {
		if *req.Deadline <= 0 {
			return spec, testum.Invalid("deadline %d: want a positive number of seconds", *req.Deadline)
		}
		if *req.Deadline > s.cfg.MaxTimeout { // seconds × time.Second overflows past 292 years
			return spec, testum.Invalid("deadline %d: at most %d seconds", *req.Deadline, s.cfg.MaxTimeout)
		}
		spec.DeadlineSecs = *req.Deadline
	}
	var err error
	if spec.Batch, err = amount("batch", req.Batch, 1); err != nil {
		return spec, err
	}
	if spec.MaxFailures, err = amount("max_failures", req.MaxFailures, 0); err != nil {
		return spec, err
	}
	return spec, nil
}

// amount validates a count or percentage, at least least, in its
// normal form; "" when not given.
func amount(name string, s *string, least int) (string, error) {
	if s == nil {
		return "", nil
	}
	a, err := testum.ParseAmount(*s)
	if err != nil {
		return "", testum.Invalid("%s: %v", name, err)
	}
	if (a.IsPercent && least > 0 && a.Percent <= 0) || (!a.IsPercent && a.Count < least) {
		return "", testum.Invalid("%s %s: must be at least %d", name, a, least)
	}
	return a.String(), nil
}

// splitEnv splits a run request's env into plain values and values marked
// secret (stored sealed, apart from the spec), and lists the secret names.
func splitEnv(env map[string]EnvValue) (plain, secret map[string]string, secretNames []string) {
	for k, v := range env {
		if !v.Secret {
			if plain == nil {
				plain = map[string]string{}
			}
			plain[k] = v.Value
			continue
		}
		if secret == nil {
			secret = map[string]string{}
		}
		secret[k] = v.Value
		secretNames = append(secretNames, k)
	}
	sort.Strings(secretNames)
	return plain, secret, secretNames
}

// targetsMap is the run's targets as stored with it and audited.
func targetsMap(t Targets) map[string]any {
	m := map[string]any{}
	if len(t.PlatformIDs) > 0 {
		m["platform_ids"] = t.PlatformIDs
	}
	if t.Labels != "" {
		m["labels"] = t.Labels
	}
	if t.Hosts != "" {
		m["hosts"] = t.Hosts
	}
	return m
}

func scriptTitle(s *testum.Script) string {
	first, _, _ := strings.Cut(strings.TrimSpace(s.Body), "\n")
	return fmt.Sprintf("[%s script] %s", s.Interpreter, first)
}
