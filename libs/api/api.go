// Package api holds the JSON types of the REST and WebSocket API, shared by
// the gateway, the command line and the tests. Field names are the contract
// of DESIGN.md and the seed's examples: extend them, never rename them.
package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"
)

// Error is every error response: {"error": "...", "code": "..."}. code is
// stable and machine-readable; error is for people.
type Error struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

// PlatformRequest creates or replaces a platform. The secret is given as
// password or private_key (with passphrase), or as a stored credential_id.
type PlatformRequest struct {
	Name           string          `json:"name"`
	Host           string          `json:"host"`
	Port           *int            `json:"port,omitempty"`
	Username       string          `json:"username"`
	AuthMethod     string          `json:"auth_method"`
	Password       *string         `json:"password,omitempty"`
	PrivateKey     *string         `json:"private_key,omitempty"`
	Passphrase     *string         `json:"passphrase,omitempty"`
	CredentialID   *int64          `json:"credential_id,omitempty"`
	Labels         json.RawMessage `json:"labels,omitempty"` // {"role":"web"} or "role=web,env=prod"
	JumpPlatformID *int64          `json:"jump_platform_id,omitempty"`
	HostKeyPolicy  string          `json:"host_key_policy,omitempty"`
}

// Platform is a platform as the API shows it: never a secret.
type Platform struct {
	ID                 int64             `json:"id"`
	Name               string            `json:"name"`
	Host               string            `json:"host"`
	Port               int               `json:"port"`
	Username           string            `json:"username"`
	AuthMethod         string            `json:"auth_method"`
	CredentialID       *int64            `json:"credential_id"`
	Labels             map[string]string `json:"labels"`
	JumpPlatformID     *int64            `json:"jump_platform_id"`
	HostKeyPolicy      string            `json:"host_key_policy"` // "" = the global policy
	HostKeyFingerprint string            `json:"host_key_fingerprint"`
	OfferedFingerprint string            `json:"offered_host_key_fingerprint,omitempty"`
	State              string            `json:"state"`
	StateDetail        string            `json:"state_detail,omitempty"`
	LastContactAt      *time.Time        `json:"last_contact_at"`
	CreatedAt          time.Time         `json:"created_at"`
	UpdatedAt          time.Time         `json:"updated_at"`
}

// RunCommandRequest is the seed's POST /api/platforms/{id}/run_command.
type RunCommandRequest struct {
	Command string `json:"command"`
	Timeout *int   `json:"timeout,omitempty"` // seconds
}

// TaskResponse answers run_command: the task id is the run id.
type TaskResponse struct {
	TaskID string `json:"task_id"`
	ID     string `json:"id"`
}

// Targets select the hosts of a run; the union of all given selectors.
type Targets struct {
	PlatformIDs []int64 `json:"platform_ids,omitempty"`
	Labels      string  `json:"labels,omitempty"` // "role=web,env=prod": every pair must match
	Hosts       string  `json:"hosts,omitempty"`  // "web[01-20],!web05": platform names
}

// Script is a script run by an interpreter.
type Script struct {
	Interpreter string   `json:"interpreter,omitempty"` // sh (default), bash, python3, ...
	Body        string   `json:"body"`
	Args        []string `json:"args,omitempty"`
}

// RunRequest is POST /api/runs.
type RunRequest struct {
	Command     string          `json:"command,omitempty"`
	Script      *Script         `json:"script,omitempty"`
	Targets     Targets         `json:"targets"`
	Parallelism *int            `json:"parallelism,omitempty"`
	Timeout     *int            `json:"timeout,omitempty"`      // per host, seconds
	Batch       json.RawMessage `json:"batch,omitempty"`        // 10 or "25%"
	MaxFailures json.RawMessage `json:"max_failures,omitempty"` // 2 or "10%"
	Deadline    *int            `json:"deadline,omitempty"`     // whole run, seconds
	RetryLost   bool            `json:"retry_lost,omitempty"`
	Dir         string          `json:"dir,omitempty"`
	Sudo        bool            `json:"sudo,omitempty"`

	// Env values are strings, or {"value": "...", "secret": true}.
	Env map[string]EnvValue `json:"env,omitempty"`
}

// EnvValue is one value of a run's env: a JSON string, or
// {"value": "...", "secret": true} for a value that is stored encrypted and
// shown as ******** in the API, the audit log and the output.
type EnvValue struct {
	Value  string
	Secret bool
}

// UnmarshalJSON reads either form.
func (v *EnvValue) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		*v = EnvValue{}
		return json.Unmarshal(b, &v.Value)
	}
	var obj struct {
		Value  *string `json:"value"`
		Secret bool    `json:"secret"`
	}
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &obj) != nil || obj.Value == nil {
		return errors.New(`env values are strings or objects {"value": "...", "secret": true}`)
	}
	*v = EnvValue{Value: *obj.Value, Secret: obj.Secret}
	return nil
}

// MarshalJSON writes a plain value as a string, a secret one as an object.
func (v EnvValue) MarshalJSON() ([]byte, error) {
	if !v.Secret {
		return json.Marshal(v.Value)
	}
	return json.Marshal(struct {
		Value  string `json:"value"`
		Secret bool   `json:"secret"`
	}{v.Value, true})
}

// RunCreated answers POST /api/runs.
type RunCreated struct {
	ID     string `json:"id"`
	TaskID string `json:"task_id"`
	State  string `json:"state"`
	Hosts  int    `json:"hosts"`
}

// Run is a run with its hosts.
type Run struct {
	ID              string         `json:"id"`
	TaskID          string         `json:"task_id"`
	State           string         `json:"state"`
	Kind            string         `json:"kind"`
	Command         string         `json:"command"`
	Script          *Script        `json:"script,omitempty"`
	Targets         map[string]any `json:"targets"`
	Parallelism     int            `json:"parallelism"`
	Timeout         int            `json:"timeout"`
	Batch           string         `json:"batch,omitempty"`
	MaxFailures     string         `json:"max_failures,omitempty"`
	Deadline        int            `json:"deadline,omitempty"`
	RetryLost       bool           `json:"retry_lost,omitempty"`
	HostCount       int            `json:"host_count"`
	Counts          map[string]int `json:"counts"`
	CreatedBy       string         `json:"created_by"`
	ParentRunID     *string        `json:"parent_run_id"`
	AbortReason     string         `json:"abort_reason,omitempty"`
	Error           string         `json:"error,omitempty"`
	CancelRequested bool           `json:"cancel_requested"`
	CreatedAt       time.Time      `json:"created_at"`
	StartedAt       *time.Time     `json:"started_at"`
	FinishedAt      *time.Time     `json:"finished_at"`
	Hosts           []RunHost      `json:"hosts,omitempty"`

	Env map[string]string `json:"env,omitempty"` // values marked secret read ********
}

// RunHost is one host of a run.
type RunHost struct {
	Idx         int        `json:"idx"`
	PlatformID  *int64     `json:"platform_id"`
	Name        string     `json:"name"`
	Address     string     `json:"address"`
	State       string     `json:"state"`
	ExitCode    *int       `json:"exit_code"`
	Signal      string     `json:"signal,omitempty"`
	Error       string     `json:"error,omitempty"`
	Attempt     int        `json:"attempt"`
	Executor    string     `json:"executor,omitempty"`
	OutputBytes int64      `json:"output_bytes"`
	Truncated   bool       `json:"truncated"`
	StartedAt   *time.Time `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	DurationMS  *int64     `json:"duration_ms"`
}

// WSMessage is one message of WS /ws/tasks/{task_id}. Seq is the run-wide
// cursor: a client that reconnects with ?since=<the last seq it saw> gets
// everything after it, with no gap and no duplicate.
type WSMessage struct {
	Type     string `json:"type"` // stdout, stderr, status, exit, error, done
	Host     string `json:"host,omitempty"`
	Seq      uint64 `json:"seq"`
	Payload  string `json:"payload"`
	Encoding string `json:"encoding,omitempty"` // "base64" when the bytes are not UTF-8
	Idx      *int   `json:"idx,omitempty"`
	HostSeq  int    `json:"host_seq,omitempty"` // per-host sequence of the executor's transcript
	Attempt  int    `json:"attempt,omitempty"`
	State    string `json:"state,omitempty"`     // status, exit, done
	ExitCode *int   `json:"exit_code,omitempty"` // exit
	Signal   string `json:"signal,omitempty"`    // exit
	At       string `json:"at,omitempty"`
}
