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
	State              PlatformState // the outcome of the last contact
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
	Command        string
	Script         *Script
	Env            map[string]string
	SecretEnv      map[string]string // env values marked secret: the store seals them apart
	SecretEnvNames []string          // their names, which the spec keeps
	Dir            string
	Sudo           bool
	TimeoutSeconds int
	Parallelism    int
	Batch          string // "10" or "25%"
	MaxFailures    string // "2" or "10%"
	DeadlineSecs   int    // whole-run deadline
	RetryLost      bool
	OutputCapBytes int64
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
	Interpreter string
	Body        string
	Args        []string
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
	// ConnectAttempts is how many SSH dials the host's connection took
	// (more than one after handshakes the host dropped before
	// authentication); nil when none was made.
	ConnectAttempts *int
}

// AuditEntry is one line of the audit log. Details must never hold a secret.
type AuditEntry struct {
	ID      int64
	At      time.Time
	ActorID *int64
	Actor   string
	Action  string
	Target  string
	Details map[string]any
	IP      string
	Outcome AuditOutcome
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
	ID           int64
	Username     string
	Role         string
	CreatedAt    time.Time
	KeyChangedAt time.Time
	LastLoginAt  *time.Time
}

// Session is a server-side login session, named by a token.
type Session struct {
	ID           string
	UserID       int64
	Username     string
	Role         string
	Active       bool
	CreatedAt    time.Time
	LastActivity time.Time
	ExpiresAt    time.Time
	EndedAt      *time.Time
	EndReason    string
	IP           string
	UserAgent    string
}
