package apitest

import (
	"net/http"
	"testing"
)

// The validator catches a body that breaks the document: a test of
// the test, so that a validator that passes everything cannot hide.
func TestContractTransportCatchesBreaches(t *testing.T) {
	req, _ := http.NewRequest("GET", "http://127.0.0.1/api/auth/me", nil)
	for _, tc := range []struct {
		name   string
		status int
		ctype  string
		body   string
		ok     bool
	}{
		{"error with code", 401, "application/json", `{"error":"login required","code":"unauthorized"}`, true},
		{"error without code", 401, "application/json", `{"error":"login required"}`, false},
		{"error with an empty code", 426, "application/json", `{"error":"x","code":""}`, false},
		{"unknown code", 401, "application/json", `{"error":"x","code":"nope"}`, false},
		{"me missing a field", 200, "application/json", `{"user":{"id":1,"username":"a","role":"admin","created_at":"2026-01-01T00:00:00Z","key_changed_at":"2026-01-01T00:00:00Z","last_login_at":null},"session_id":"0195e9a4-7c35-7000-8000-000000000000","permissions":[]}`, false},
		{"me as text", 200, "text/plain", `hello`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := Check(req, tc.status, http.Header{"Content-Type": {tc.ctype}}, []byte(tc.body))
			if (msg == "") != tc.ok {
				t.Errorf("ok %v, got %q", tc.ok, msg)
			}
		})
	}
}

func TestCheckWSMessage(t *testing.T) {
	for _, tc := range []struct {
		frame string
		ok    bool
	}{
		{`{"type":"stdout","host":"web1","seq":7,"payload":"hi\n","idx":0,"host_seq":3,"attempt":1,"at":"2026-01-02T03:04:05Z"}`, true},
		{`{"type":"done","seq":9,"payload":"succeeded","state":"succeeded"}`, true},
		{`{"type":"stdout","seq":7}`, false},
		{`{"type":"chunk","seq":7,"payload":""}`, false},
		{`{"type":"stdout","seq":-1,"payload":""}`, false},
	} {
		if msg := CheckWSMessage([]byte(tc.frame)); (msg == "") != tc.ok {
			t.Errorf("%s: ok %v, got %q", tc.frame, tc.ok, msg)
		}
	}
}
