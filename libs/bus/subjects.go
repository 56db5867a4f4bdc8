package bus

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// Subject prefixes; each ends with the dot before the run id.
const (
	subjRun    = "testum.run."
	subjTask   = "testum.task."
	subjOutput = "testum.out."
	subjEvent  = "testum.evt."
	subjCancel = "testum.ctl.cancel."
	// runLevel is the last token of the output subject of run-level
	// messages, where a host subject has the host's index.
	runLevel = "run"
)

// RunLevel is the Idx of a transcript message about the whole run (done),
// which travels on the run's own output subject instead of a host's.
const RunLevel = -1

// RunSubject carries the "run accepted" message of a run.
func RunSubject(run uuid.UUID) string { return subjRun + run.String() }

// TaskSubject carries the task of one host of a run.
func TaskSubject(run uuid.UUID, idx int) string {
	return subjTask + run.String() + "." + strconv.Itoa(idx)
}

// OutputSubject carries one host's transcript: chunks, status and exit. With
// idx RunLevel it is the run's own subject (done).
func OutputSubject(run uuid.UUID, idx int) string {
	if idx == RunLevel {
		return OutputRunSubject(run)
	}
	return subjOutput + run.String() + "." + strconv.Itoa(idx)
}

// OutputRunSubject carries run-level transcript messages (done).
func OutputRunSubject(run uuid.UUID) string { return subjOutput + run.String() + "." + runLevel }

// OutputFilter matches every transcript message of a run.
func OutputFilter(run uuid.UUID) string { return subjOutput + run.String() + ".*" }

// EventSubject carries a run's state transitions (core NATS).
func EventSubject(run uuid.UUID) string { return subjEvent + run.String() }

// CancelSubject is the core NATS subject that tells every executor to end a
// run's sessions.
func CancelSubject(run uuid.UUID) string { return subjCancel + run.String() }

// CancelAll matches every cancel message.
const CancelAll = subjCancel + "*"

// ParseTaskSubject returns the run and host index of a task subject.
func ParseTaskSubject(subj string) (uuid.UUID, int, error) {
	rest, ok := strings.CutPrefix(subj, subjTask)
	if !ok {
		return uuid.Nil, 0, fmt.Errorf("not a task subject: %q", subj)
	}
	runTok, idxTok, ok := strings.Cut(rest, ".")
	if !ok {
		return uuid.Nil, 0, fmt.Errorf("not a task subject: %q", subj)
	}
	run, err := parseRunToken(runTok)
	if err != nil {
		return uuid.Nil, 0, fmt.Errorf("task subject %q: %w", subj, err)
	}
	idx, err := parseIndex(idxTok)
	if err != nil {
		return uuid.Nil, 0, fmt.Errorf("task subject %q: %w", subj, err)
	}
	return run, idx, nil
}

// ParseOutputSubject returns the run and host index of an output subject;
// the index is RunLevel for the run's own subject.
func ParseOutputSubject(subj string) (uuid.UUID, int, error) {
	rest, ok := strings.CutPrefix(subj, subjOutput)
	if !ok {
		return uuid.Nil, 0, fmt.Errorf("not an output subject: %q", subj)
	}
	runTok, idxTok, ok := strings.Cut(rest, ".")
	if !ok {
		return uuid.Nil, 0, fmt.Errorf("not an output subject: %q", subj)
	}
	run, err := parseRunToken(runTok)
	if err != nil {
		return uuid.Nil, 0, fmt.Errorf("output subject %q: %w", subj, err)
	}
	if idxTok == runLevel {
		return run, RunLevel, nil
	}
	idx, err := parseIndex(idxTok)
	if err != nil {
		return uuid.Nil, 0, fmt.Errorf("output subject %q: %w", subj, err)
	}
	return run, idx, nil
}

// ParseCancelSubject returns the run of a cancel subject.
func ParseCancelSubject(subj string) (uuid.UUID, error) {
	rest, ok := strings.CutPrefix(subj, subjCancel)
	if !ok {
		return uuid.Nil, fmt.Errorf("not a cancel subject: %q", subj)
	}
	run, err := parseRunToken(rest)
	if err != nil {
		return uuid.Nil, fmt.Errorf("cancel subject %q: %w", subj, err)
	}
	return run, nil
}

// parseRunToken reads a run id written by uuid.UUID.String: the canonical
// form only, so that a parsed subject is the subject that was built.
func parseRunToken(s string) (uuid.UUID, error) {
	run, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, err
	}
	if run.String() != s {
		return uuid.Nil, fmt.Errorf("run id %q is not in canonical form", s)
	}
	return run, nil
}

// parseIndex reads a host index written by strconv.Itoa: decimal digits, no
// sign, no leading zero.
func parseIndex(s string) (int, error) {
	idx, err := strconv.Atoi(s)
	if err != nil || idx < 0 || strconv.Itoa(idx) != s {
		return 0, fmt.Errorf("host index %q: want a non-negative integer", s)
	}
	return idx, nil
}

// Broadcast subjects (core NATS) that tell every gateway's WebSockets what
// they would otherwise poll PostgreSQL for.
const (
	// SessionsEndedSubject announces sessions that ended: logout,
	// revocation, a rotated or reset key, a deleted or demoted user, expiry.
	SessionsEndedSubject = "testum.bcast.sessions"
	subjRunFinal         = "testum.bcast.final."
	// RunFinalAll matches every run-final broadcast.
	RunFinalAll = subjRunFinal + "*"
)

// RunFinalSubject announces that a run reached its final state, after its
// transcript's done was stored.
func RunFinalSubject(run uuid.UUID) string { return subjRunFinal + run.String() }

// ParseRunFinalSubject returns the run of a run-final subject.
func ParseRunFinalSubject(subj string) (uuid.UUID, error) {
	rest, ok := strings.CutPrefix(subj, subjRunFinal)
	if !ok {
		return uuid.Nil, fmt.Errorf("not a run-final subject: %q", subj)
	}
	run, err := parseRunToken(rest)
	if err != nil {
		return uuid.Nil, fmt.Errorf("run-final subject %q: %w", subj, err)
	}
	return run, nil
}
