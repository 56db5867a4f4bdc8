package logstore

import (
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// HostLogKey is where a run host's raw output is archived.
func HostLogKey(run uuid.UUID, idx int) string { return fmt.Sprintf("runs/%s/%d.log", run, idx) }

// HostIndexKey is where a run host's log index (timestamps and streams) is
// archived, next to its log.
func HostIndexKey(run uuid.UUID, idx int) string { return fmt.Sprintf("runs/%s/%d.idx", run, idx) }

// HostAttemptLogKey is where one attempt of a run host archives its raw
// output: the first at HostLogKey, each later one beside it. An attempt
// that lost the host (its executor looked dead, then came back) still
// archives what it saw, and must not overwrite the log of the attempt that
// replaced it.
func HostAttemptLogKey(run uuid.UUID, idx, attempt int) string {
	if attempt <= 1 {
		return HostLogKey(run, idx)
	}
	return fmt.Sprintf("runs/%s/%d.%d.log", run, idx, attempt)
}

// IndexKeyOf is the key of the index archived next to the log at logKey.
func IndexKeyOf(logKey string) string { return strings.TrimSuffix(logKey, ".log") + ".idx" }
