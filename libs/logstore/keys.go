package logstore

import (
	"fmt"

	"github.com/google/uuid"
)

// HostLogKey is where a run host's raw output is archived.
func HostLogKey(run uuid.UUID, idx int) string { return fmt.Sprintf("runs/%s/%d.log", run, idx) }

// HostIndexKey is where a run host's log index (timestamps and streams) is
// archived, next to its log.
func HostIndexKey(run uuid.UUID, idx int) string { return fmt.Sprintf("runs/%s/%d.idx", run, idx) }
