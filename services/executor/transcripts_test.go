package executor

import (
	"testing"

	"github.com/testum/testum/libs/bus"
)

// TestTranscriptsOpen: which hosts a finished run's done waits for.
func TestTranscriptsOpen(t *testing.T) {
	status := func(attempt int, state string) bus.OutputMsg {
		return bus.OutputMsg{Type: bus.TypeStatus, Attempt: attempt, State: state}
	}
	for _, c := range []struct {
		name  string
		ended map[int]int
		last  map[int]bus.OutputMsg
		want  int
	}{
		{"every host ended", map[int]int{0: 1, 1: 1}, map[int]bus.OutputMsg{0: status(1, "ok"), 1: status(1, "failed")}, 0},
		{"exit sent, final status not yet", map[int]int{0: 1}, map[int]bus.OutputMsg{0: {Type: bus.TypeExit, Attempt: 1, State: "ok"}}, 1},
		{"output sent, no end yet", map[int]int{0: 1, 1: 1}, map[int]bus.OutputMsg{0: {Type: bus.TypeStdout, Attempt: 1}, 1: status(1, "ok")}, 1},
		{"running is not an end", map[int]int{0: 1}, map[int]bus.OutputMsg{0: status(1, "running")}, 1},
		{"a host without messages", map[int]int{0: 1}, map[int]bus.OutputMsg{}, 0},
		{"the last message is of another attempt", map[int]int{0: 2}, map[int]bus.OutputMsg{0: {Type: bus.TypeStdout, Attempt: 1}}, 0},
		{"ended by the coordinator", map[int]int{}, map[int]bus.OutputMsg{0: status(0, "skipped")}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := transcriptsOpen(c.ended, c.last); got != c.want {
				t.Errorf("transcriptsOpen = %d, want %d", got, c.want)
			}
		})
	}
}
