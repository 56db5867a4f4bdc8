package gateway

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/testum"
)

// The generated types keep every field's presence as the API has always
// written it: required fields even when null, optional ones left out when
// empty, and shown when set.
func TestWireKeepsFieldPresence(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	id := uuid.MustParse("3f8a1c2e-5b7d-4e9f-a1b2-c3d4e5f60718")
	code := 3
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"a bare run", runWire(testum.Run{ID: id, State: testum.RunQueued, Kind: "command", Command: "true",
			Targets: map[string]any{"platform_ids": []any{float64(7)}}, Parallelism: 10, TimeoutSeconds: 60, CreatedAt: at}, nil),
			`{"id":"` + id.String() + `","task_id":"` + id.String() + `","state":"queued","kind":"command","command":"true",
			  "targets":{"platform_ids":[7]},"parallelism":10,"timeout":60,"host_count":0,"counts":null,"created_by":"",
			  "parent_run_id":null,"cancel_requested":false,"created_at":"2026-03-04T05:06:07Z","started_at":null,"finished_at":null}`},
		{"a run with everything", runWire(testum.Run{ID: id, State: testum.RunAborted, Kind: "script", Command: "[bash script] x",
			Spec: testum.RunSpec{Script: &testum.Script{Interpreter: "bash", Body: "x"}, Batch: "25%", MaxFailures: "1",
				DeadlineSecs: 9, RetryLost: true, Env: map[string]string{"A": "1"}, SecretEnvNames: []string{"T"}},
			Targets: map[string]any{"labels": "role=web", "hosts": "web[1-2]"}, ParentRunID: &id, AbortReason: "too many",
			Error: "e", CreatedAt: at},
			[]testum.RunHost{{Idx: 0, Name: "web1", State: testum.HostFailed, ExitCode: &code, Signal: "TERM", Error: "x",
				ExecutorID: "ex1", StartedAt: &at, FinishedAt: &at}}),
			`{"id":"` + id.String() + `","task_id":"` + id.String() + `","state":"aborted","kind":"script","command":"[bash script] x",
			  "script":{"interpreter":"bash","body":"x"},"targets":{"hosts":"web[1-2]","labels":"role=web"},"parallelism":0,"timeout":0,
			  "batch":"25%","max_failures":"1","deadline":9,"retry_lost":true,"host_count":0,"counts":{"failed":1},"created_by":"",
			  "parent_run_id":"` + id.String() + `","abort_reason":"too many","error":"e","cancel_requested":false,
			  "created_at":"2026-03-04T05:06:07Z","started_at":null,"finished_at":null,"env":{"A":"1","T":"********"},
			  "hosts":[{"idx":0,"platform_id":null,"name":"web1","address":"","state":"failed","exit_code":3,"signal":"TERM","error":"x",
			    "attempt":0,"executor":"ex1","output_bytes":0,"truncated":false,"started_at":"2026-03-04T05:06:07Z",
			    "finished_at":"2026-03-04T05:06:07Z","duration_ms":0}]}`},
		{"a run with no hosts", runWire(testum.Run{ID: id, Targets: map[string]any{}, CreatedAt: at}, []testum.RunHost{}),
			`{"id":"` + id.String() + `","task_id":"` + id.String() + `","state":"","kind":"","command":"","targets":{},"parallelism":0,
			  "timeout":0,"host_count":0,"counts":{},"created_by":"","parent_run_id":null,"cancel_requested":false,
			  "created_at":"2026-03-04T05:06:07Z","started_at":null,"finished_at":null}`},
		{"a platform never contacted", platformWire(testum.Platform{ID: 1, Name: "a", Host: "127.0.0.1", Port: 22, Username: "u",
			AuthMethod: testum.AuthPassword, Labels: map[string]string{}, State: testum.PlatformUnknown, CreatedAt: at, UpdatedAt: at}),
			`{"id":1,"name":"a","host":"127.0.0.1","port":22,"username":"u","auth_method":"password","credential_id":null,"labels":{},
			  "jump_platform_id":null,"host_key_policy":"","host_key_fingerprint":"","state":"unknown","last_contact_at":null,
			  "created_at":"2026-03-04T05:06:07Z","updated_at":"2026-03-04T05:06:07Z"}`},
		{"a session still open", sessionWire(testum.Session{ID: id.String(), UserID: 2, Username: "ann", Role: "admin", Active: true,
			CreatedAt: at, LastActivity: at, ExpiresAt: at, IP: "127.0.0.1"}),
			`{"id":"` + id.String() + `","user_id":2,"username":"ann","role":"admin","active":true,"created_at":"2026-03-04T05:06:07Z",
			  "last_activity":"2026-03-04T05:06:07Z","expires_at":"2026-03-04T05:06:07Z","ip":"127.0.0.1","user_agent":""}`},
		{"an audit entry without details", auditEntryWire(testum.AuditEntry{ID: 5, At: at, Actor: "ann", Action: "auth.login",
			Outcome: testum.AuditOK}),
			`{"id":5,"at":"2026-03-04T05:06:07Z","actor_id":null,"actor":"ann","action":"auth.login","target":"","details":null,
			  "ip":"","outcome":"ok"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			var got, want any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatalf("want: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %s\nwant %s", b, tc.want)
			}
		})
	}
}
