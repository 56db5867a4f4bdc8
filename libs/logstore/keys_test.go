package logstore

import (
	"testing"

	"github.com/google/uuid"
)

// The keys are stored in run_hosts.log_key and read back by every gateway:
// they must not change.
func TestHostKeys(t *testing.T) {
	run := uuid.MustParse("0b7e4c3a-1f2d-4e5f-8a9b-0c1d2e3f4a5b")
	for _, tc := range []struct{ name, got, want string }{
		{"log", HostLogKey(run, 7), "runs/0b7e4c3a-1f2d-4e5f-8a9b-0c1d2e3f4a5b/7.log"},
		{"index", HostIndexKey(run, 0), "runs/0b7e4c3a-1f2d-4e5f-8a9b-0c1d2e3f4a5b/0.idx"},
		{"first attempt", HostAttemptLogKey(run, 7, 1), HostLogKey(run, 7)},
		{"later attempt", HostAttemptLogKey(run, 7, 2), "runs/0b7e4c3a-1f2d-4e5f-8a9b-0c1d2e3f4a5b/7.2.log"},
		{"index of the first", IndexKeyOf(HostLogKey(run, 0)), HostIndexKey(run, 0)},
		{"index of a later", IndexKeyOf(HostAttemptLogKey(run, 7, 3)), "runs/0b7e4c3a-1f2d-4e5f-8a9b-0c1d2e3f4a5b/7.3.idx"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, tc.got, tc.want)
		}
		if err := ValidateKey(tc.got); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
