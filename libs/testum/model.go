package testum

import (
	"time"

	"github.com/google/uuid"
)

// Platform is a managed host.
type Platform struct {
	ID                 int64
	Name               string
	Host               string
	Port               int
	Username           string
	AuthMethod         AuthMethod
	CredentialID       *int64
	Labels             map[string]string
	JumpPlatformID     *int64
	HostKeyPolicy      HostKeyPolicy // "" means the global policy
	HostKey            string        // pinned key, authorized_keys format; "" when none yet
	HostKeyFingerprint string
	OfferedHostKey     string // a different key the host presented, awaiting acceptance
	OfferedFingerprint string
	OfferedAt          *time.Time
	State              string // outcome of the last contact: unknown, reachable, or a failure state
	StateDetail        string
	LastContactAt      *time.Time
	CreatedAt          time.Time
	UpdatedAt          time.Time
}

// Credential is a stored secret without the secret.
type Credential struct {
	ID            int64
	Name          string // "" for a platform's inline secret
	Kind          AuthMethod
	HasPassphrase bool
	PublicKey     string
	Fingerprint   string
	KeyID         string
	OwnerPlatform *int64
	CreatedAt     time.Time
}

// RunSpec is what a run executes and how, as stored with the run.
type RunSpec struct {
	Command        string            `json:"command,omitempty"`
	Script         *Script           `json:"script,omitempty"`
	Env            map[string]string `json:"env,omitempty"`
	SecretEnv      map[string]string `json:"-"`                    // env values marked secret: the store seals them apart
	SecretEnvNames []string          `json:"secret_env,omitempty"` // their names, which the spec keeps
	Dir            string            `json:"dir,omitempty"`
	Sudo           bool              `json:"sudo,omitempty"`
	TimeoutSeconds int               `json:"timeout"`
	Parallelism    int               `json:"parallelism"`
	Batch          string            `json:"batch,omitempty"`        // "10" or "25%"
	MaxFailures    string            `json:"max_failures,omitempty"` // "2" or "10%"
	DeadlineSecs   int               `json:"deadline,omitempty"`     // whole-run deadline
	RetryLost      bool              `json:"retry_lost,omitempty"`
	OutputCapBytes int64             `json:"output_cap,omitempty"`
}

// Environment is the run's whole environment: plain and secret values.
func (s RunSpec) Environment() map[string]string {
	if len(s.SecretEnv) == 0 {
		return s.Env
	}
	all := make(map[string]string, len(s.Env)+len(s.SecretEnv))
	for k, v := range s.Env {
		all[k] = v
	}
	for k, v := range s.SecretEnv {
		all[k] = v
	}
	return all
}

// Script is a script body run by an interpreter.
type Script struct {
	Interpreter string   `json:"interpreter"`
	Body        string   `json:"body"`
	Args        []string `json:"args,omitempty"`
}

// Run is one execution on a set of hosts.
type Run struct {
	ID              uuid.UUID
	State           RunState
	Kind            string
	Command         string
	Spec            RunSpec
	Targets         map[string]any
	Parallelism     int
	TimeoutSeconds  int
	HostCount       int
	CreatedBy       *int64
	CreatedByName   string
	ParentRunID     *uuid.UUID
	CoordinatorID   string
	CancelRequested bool
	AbortReason     string // why no further host starts; the run ends aborted
	Error           string
	CreatedAt       time.Time
	StartedAt       *time.Time
	FinishedAt      *time.Time
}

// RunHost is one host of a run.
type RunHost struct {
	RunID        uuid.UUID
	Idx          int
	PlatformID   *int64
	Name         string
	Address      string
	State        HostState
	Attempt      int
	ExecutorID   string
	ExitCode     *int
	Signal       string
	Error        string
	OutputBytes  int64
	Truncated    bool
	OutputDigest string
	LogKey       string
	ReleasedAt   *time.Time
	StartedAt    *time.Time
	FinishedAt   *time.Time
}

// AuditEntry is one line of the audit log. Details must never hold a secret.
type AuditEntry struct {
	ID      int64          `json:"id"`
	At      time.Time      `json:"at"`
	ActorID *int64         `json:"actor_id"`
	Actor   string         `json:"actor"`
	Action  string         `json:"action"`
	Target  string         `json:"target"`
	Details map[string]any `json:"details"`
	IP      string         `json:"ip"`
	Outcome AuditOutcome   `json:"outcome"`
}

// AuditOutcome is how an audited action ended.
type AuditOutcome string

// The outcomes an audit entry records.
const (
	AuditOK     AuditOutcome = "ok"     // done as asked
	AuditDenied AuditOutcome = "denied" // refused: the role, the origin or a rate limit
	AuditFailed AuditOutcome = "failed" // tried and failed (a wrong key, an unreachable host)
)

// User is a person who logs in to testum. The master key is never held
// here: only its bcrypt hash, in the database.
type User struct {
	ID           int64      `json:"id"`
	Username     string     `json:"username"`
	Role         string     `json:"role"`
	CreatedAt    time.Time  `json:"created_at"`
	KeyChangedAt time.Time  `json:"key_changed_at"`
	LastLoginAt  *time.Time `json:"last_login_at"`
}

// Session is a server-side login session, named by a token.
type Session struct {
	ID           string     `json:"id"`
	UserID       int64      `json:"user_id"`
	Username     string     `json:"username"`
	Role         string     `json:"role"`
	Active       bool       `json:"active"`
	CreatedAt    time.Time  `json:"created_at"`
	LastActivity time.Time  `json:"last_activity"`
	ExpiresAt    time.Time  `json:"expires_at"`
	EndedAt      *time.Time `json:"ended_at,omitempty"`
	EndReason    string     `json:"end_reason,omitempty"`
	IP           string     `json:"ip"`
	UserAgent    string     `json:"user_agent"`
}
