package gateway

import (
	"bytes"
	"encoding/json"

	"github.com/google/uuid"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/platforms"
	"github.com/testum/testum/libs/runs"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// This file maps between the domain types and the wire types generated
// from libs/api/openapi.yaml, in both directions. The document decides
// which fields are always present (required, null when empty) and which
// are left out when empty: a required field is a value or a pointer set
// even when nil, an optional one is a pointer set only when there is
// something to show (opt, optSlice).

// opt is v as an optional field: left out when it is the zero value.
func opt[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}

// optSlice is s as an optional field: left out when empty.
func optSlice[T any](s []T) *[]T {
	if len(s) == 0 {
		return nil
	}
	return &s
}

// deref is an optional request field's value, the zero value when absent.
func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

// Responses.

func platformWire(p testum.Platform) apiclient.Platform {
	return apiclient.Platform{
		Id: p.ID, Name: p.Name, Host: p.Host, Port: p.Port, Username: p.Username,
		AuthMethod: apiclient.AuthMethod(p.AuthMethod), CredentialId: p.CredentialID, Labels: p.Labels,
		JumpPlatformId: p.JumpPlatformID, HostKeyPolicy: apiclient.HostKeyPolicy(p.HostKeyPolicy),
		HostKeyFingerprint: p.HostKeyFingerprint, OfferedHostKeyFingerprint: opt(p.OfferedFingerprint),
		State: string(p.State), StateDetail: opt(p.StateDetail), LastContactAt: p.LastContactAt,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
	}
}

func hostKeyInfoWire(policy string, hk store.HostKeys) apiclient.HostKeyInfo {
	return apiclient.HostKeyInfo{Policy: policy, Pinned: opt(hk.Pinned), PinnedFingerprint: opt(hk.PinnedFingerprint),
		Offered: opt(hk.Offered), OfferedFingerprint: opt(hk.OfferedFingerprint), OfferedAt: hk.OfferedAt}
}

func testResultWire(r platforms.TestResult) apiclient.TestResult {
	return apiclient.TestResult{Ok: r.OK, State: apiclient.TestResultState(r.State), Message: r.Message,
		HostKeyFingerprint: opt(r.Fingerprint), Pinned: opt(r.Pinned), ElapsedMs: r.Millis}
}

func importResultWire(created int, items []platforms.ImportItem) apiclient.ImportResult {
	out := apiclient.ImportResult{Created: created}
	if items != nil {
		list := make([]apiclient.ImportItem, len(items))
		for i, it := range items {
			list[i] = apiclient.ImportItem{Name: it.Name, Line: opt(it.Line), Result: apiclient.ImportItemResult(it.Result),
				Reason: opt(it.Reason), PlatformId: opt(it.PlatformID)}
		}
		out.Items = &list
	}
	return out
}

func credentialWire(cr testum.Credential) apiclient.Credential {
	return apiclient.Credential{Id: cr.ID, Name: cr.Name, Kind: apiclient.AuthMethod(cr.Kind), HasPassphrase: cr.HasPassphrase,
		PublicKey: cr.PublicKey, Fingerprint: cr.Fingerprint, KeyId: cr.KeyID, CreatedAt: cr.CreatedAt}
}

func identityWire(cr testum.Credential) apiclient.Identity {
	return apiclient.Identity{CredentialId: cr.ID, PublicKey: cr.PublicKey, Fingerprint: cr.Fingerprint}
}

func sshKeyWire(k store.SSHKey) apiclient.SSHKey {
	return apiclient.SSHKey{Id: k.ID, Name: k.Name, PublicKey: k.PublicKey, Fingerprint: k.Fingerprint,
		CreatedBy: k.CreatedBy, CreatedAt: k.CreatedAt}
}

func executorWire(e store.ExecutorInfo) apiclient.Executor {
	return apiclient.Executor{Id: e.ID, Hostname: e.Hostname, Pid: e.PID, Slots: e.Slots,
		StartedAt: e.StartedAt, HeartbeatAt: e.HeartbeatAt}
}

func runCreatedWire(r testum.Run) apiclient.RunCreated {
	return apiclient.RunCreated{Id: r.ID, TaskId: r.ID, State: apiclient.RunState(r.State), Hosts: r.HostCount}
}

// runWire renders a run; with hosts, also per-host rows and counts.
func runWire(r testum.Run, hosts []testum.RunHost) apiclient.Run {
	out := apiclient.Run{
		Id: r.ID, TaskId: r.ID, State: apiclient.RunState(r.State), Kind: apiclient.RunKind(r.Kind), Command: r.Command,
		Targets: targetsWire(r.Targets), Parallelism: r.Parallelism, Timeout: r.TimeoutSeconds, Batch: opt(r.Spec.Batch),
		MaxFailures: opt(r.Spec.MaxFailures), Deadline: opt(r.Spec.DeadlineSecs), RetryLost: opt(r.Spec.RetryLost),
		HostCount: r.HostCount, CreatedBy: r.CreatedByName, ParentRunId: r.ParentRunID, AbortReason: opt(r.AbortReason),
		Error: opt(r.Error), CancelRequested: r.CancelRequested, CreatedAt: r.CreatedAt, StartedAt: r.StartedAt,
		FinishedAt: r.FinishedAt,
	}
	if env := envJSON(r.Spec); env != nil {
		out.Env = &env
	}
	if s := r.Spec.Script; s != nil {
		out.Script = &apiclient.Script{Interpreter: opt(s.Interpreter), Body: s.Body, Args: optSlice(s.Args)}
	}
	if hosts != nil {
		counts := map[string]int{}
		list := make([]apiclient.RunHost, len(hosts))
		for i, h := range hosts {
			counts[string(h.State)]++
			list[i] = runHostWire(h)
		}
		out.Counts, out.Hosts = &counts, optSlice(list)
	}
	return out
}

func runHostWire(h testum.RunHost) apiclient.RunHost {
	out := apiclient.RunHost{
		Idx: h.Idx, PlatformId: h.PlatformID, Name: h.Name, Address: h.Address, State: apiclient.HostState(h.State),
		ExitCode: h.ExitCode, Signal: opt(h.Signal), Error: opt(h.Error), Attempt: h.Attempt, Executor: opt(h.ExecutorID),
		OutputBytes: h.OutputBytes, Truncated: h.Truncated, StartedAt: h.StartedAt, FinishedAt: h.FinishedAt,
		ConnectAttempts: h.ConnectAttempts,
	}
	if h.StartedAt != nil && h.FinishedAt != nil {
		d := h.FinishedAt.Sub(*h.StartedAt).Milliseconds()
		out.DurationMs = &d
	}
	return out
}

// targetsWire is a run's stored targets (see runs.targetsMap) as the API
// shows them. The store reads them back from JSON, so platform ids come
// as float64; ids are far below 2^53, where float64 is exact.
func targetsWire(m map[string]any) apiclient.Targets {
	var t apiclient.Targets
	if s, ok := m["labels"].(string); ok {
		t.Labels = &s
	}
	if s, ok := m["hosts"].(string); ok {
		t.Hosts = &s
	}
	switch ids := m["platform_ids"].(type) {
	case []int64:
		t.PlatformIds = &ids
	case []any:
		list := make([]int64, 0, len(ids))
		for _, v := range ids {
			if f, ok := v.(float64); ok {
				list = append(list, int64(f))
			}
		}
		t.PlatformIds = &list
	}
	return t
}

func userWire(u testum.User) apiclient.User {
	return apiclient.User{Id: u.ID, Username: u.Username, Role: apiclient.Role(u.Role), CreatedAt: u.CreatedAt,
		KeyChangedAt: u.KeyChangedAt, LastLoginAt: u.LastLoginAt}
}

func sessionWire(s testum.Session) apiclient.Session {
	id, _ := uuid.Parse(s.ID) // the database's uuid, written as text: it parses
	return apiclient.Session{Id: id, UserId: s.UserID, Username: s.Username, Role: apiclient.Role(s.Role), Active: s.Active,
		CreatedAt: s.CreatedAt, LastActivity: s.LastActivity, ExpiresAt: s.ExpiresAt, EndedAt: s.EndedAt,
		EndReason: opt(s.EndReason), Ip: s.IP, UserAgent: s.UserAgent}
}

func auditEntryWire(e testum.AuditEntry) apiclient.AuditEntry {
	out := apiclient.AuditEntry{Id: e.ID, At: e.At, ActorId: e.ActorID, Actor: e.Actor, Action: e.Action, Target: e.Target,
		Ip: e.IP, Outcome: apiclient.AuditEntryOutcome(e.Outcome)}
	if e.Details != nil {
		out.Details = &e.Details
	}
	return out
}

func permissionsWire(role auth.Role) []string {
	actions := auth.ActionsOf(role)
	if actions == nil {
		return nil
	}
	out := make([]string, len(actions))
	for i, a := range actions {
		out[i] = string(a)
	}
	return out
}

// wsDone is the message that ends a run's stream.
func wsDone(seq uint64, state string) apiclient.WSMessage {
	return apiclient.WSMessage{Type: apiclient.WSMessageType(bus.TypeDone), Seq: seq, Payload: state, State: opt(state)}
}

// Requests.

func platformRequest(req apiclient.PlatformRequest) (platforms.Request, error) {
	var raw json.RawMessage
	if req.Labels != nil {
		// labels are an object or "k=v,..."; parseLabels reads either.
		b, err := req.Labels.MarshalJSON()
		if err != nil {
			return platforms.Request{}, testum.Invalid("labels: %v", err)
		}
		raw = b
	}
	labels, err := parseLabels(raw)
	if err != nil {
		return platforms.Request{}, err
	}
	return platforms.Request{
		Name: req.Name, Host: req.Host, Port: req.Port, Username: req.Username, CredentialID: req.CredentialId,
		Secret: platforms.Secret{AuthMethod: deref(req.AuthMethod), Password: req.Password, PrivateKey: req.PrivateKey,
			Passphrase: req.Passphrase},
		Labels: labels, JumpPlatformID: req.JumpPlatformId, HostKeyPolicy: deref(req.HostKeyPolicy),
	}, nil
}

func runTargets(t apiclient.Targets) runs.Targets {
	return runs.Targets{PlatformIDs: deref(t.PlatformIds), Labels: deref(t.Labels), Hosts: deref(t.Hosts)}
}

// runRequest turns a decoded run request into the runs service's.
func runRequest(req apiclient.RunRequest) (runs.Request, error) {
	r := runs.Request{Command: deref(req.Command), Targets: runTargets(req.Targets), Parallelism: req.Parallelism,
		Timeout: req.Timeout, Deadline: req.Deadline, RetryLost: deref(req.RetryLost), Dir: deref(req.Dir),
		Sudo: deref(req.Sudo)}
	if s := req.Script; s != nil {
		r.Script = &testum.Script{Interpreter: deref(s.Interpreter), Body: s.Body, Args: deref(s.Args)}
	}
	if req.Env != nil && len(*req.Env) > 0 {
		r.Env = make(map[string]runs.EnvValue, len(*req.Env))
		for k, v := range *req.Env {
			ev, err := envValue(k, v)
			if err != nil {
				return r, err
			}
			r.Env[k] = ev
		}
	}
	var err error
	if r.Batch, err = amountText("batch", req.Batch); err != nil {
		return r, err
	}
	if r.MaxFailures, err = amountText("max_failures", req.MaxFailures); err != nil {
		return r, err
	}
	return r, nil
}

// envValue reads one env value: a JSON string, or {"value": "...",
// "secret": true}. The generated union keeps the raw JSON; its value must
// be given, which the union cannot say.
func envValue(name string, v apiclient.EnvValue) (runs.EnvValue, error) {
	b, err := v.MarshalJSON()
	if err != nil {
		return runs.EnvValue{}, testum.Invalid("env %s: %v", name, err)
	}
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return runs.EnvValue{}, testum.Invalid("env %s: %v", name, err)
		}
		return runs.EnvValue{Value: s}, nil
	}
	var obj struct {
		Value  *string `json:"value"`
		Secret bool    `json:"secret"`
	}
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &obj) != nil || obj.Value == nil {
		return runs.EnvValue{}, testum.Invalid(`env %s: env values are strings or objects {"value": "...", "secret": true}`, name)
	}
	return runs.EnvValue{Value: *obj.Value, Secret: obj.Secret}, nil
}

// amountText reads a count or percentage given as a JSON number or string;
// nil when it is left out. The runs service judges the value.
func amountText(name string, a *apiclient.Amount) (*string, error) {
	if a == nil {
		return nil, nil
	}
	raw, err := a.MarshalJSON()
	if err != nil {
		return nil, testum.Invalid("%s: want a number or a percentage string", name)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, testum.Invalid("%s: want a number or a percentage string", name)
		}
	} else {
		s = string(raw)
	}
	return &s, nil
}

func importRequest(req apiclient.ImportRequest) platforms.Import {
	return platforms.Import{
		Format: string(deref(req.Format)), Content: req.Content, Username: deref(req.Username), CredentialID: req.CredentialId,
		Secret: platforms.Secret{AuthMethod: deref(req.AuthMethod), Password: req.Password, PrivateKey: req.PrivateKey,
			Passphrase: req.Passphrase},
		Labels: deref(req.Labels), LabelsFromVars: deref(req.LabelsFromVars),
	}
}
