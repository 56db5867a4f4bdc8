package platforms

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/fleet"
	"github.com/testum/testum/libs/sshx"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// Fleet is what a connection test needs besides the dial itself: the SSH
// target of a stored platform, and the recording of the host keys it met.
type Fleet interface {
	Platform(ctx context.Context, id int64) (testum.Platform, error)
	Target(ctx context.Context, p testum.Platform, policy testum.HostKeyPolicy) (sshx.Target, error)
	DescribeDialError(ctx context.Context, err error) string
	RecordOffered(ctx context.Context, err error) (int64, error)
	PinFirstContacts(ctx context.Context, hops []sshx.Hop) ([]sshx.Hop, error)
	PlatformRecordContact(ctx context.Context, id int64, state testum.PlatformState, detail string) error
	Audit(ctx context.Context, e testum.AuditEntry) error
}

// FleetOf is the Fleet of the platforms in st.
func FleetOf(st *store.Store) Fleet { return storeFleet{st} }

type storeFleet struct{ *store.Store }

func (f storeFleet) Target(ctx context.Context, p testum.Platform, policy testum.HostKeyPolicy) (sshx.Target, error) {
	return fleet.Target(ctx, f.Store, p, policy)
}

func (f storeFleet) DescribeDialError(ctx context.Context, err error) string {
	return fleet.DescribeDialError(ctx, f.Store, err)
}

func (f storeFleet) RecordOffered(ctx context.Context, err error) (int64, error) {
	return fleet.RecordOffered(ctx, f.Store, err)
}

func (f storeFleet) PinFirstContacts(ctx context.Context, hops []sshx.Hop) ([]sshx.Hop, error) {
	return fleet.PinFirstContacts(ctx, f.Store, hops)
}

// TestResult is what a connection test found.
type TestResult struct {
	OK          bool
	State       string // ok, unreachable, auth_failed, hostkey_rejected
	Message     string
	Fingerprint string
	Pinned      bool // the key was pinned by this test (first contact)
	Millis      int64
}

// Test dials platform id (through its jump chain), checks the host key and
// logs in, within the connect timeout, and says what failed. The outcome
// is recorded on the platform and audited; a failed login is a result,
// not an error.
func (s *Service) Test(ctx context.Context, by auth.Actor, id int64) (TestResult, error) {
	if s.cfg.Fleet == nil {
		return TestResult{}, testum.Errorf(testum.CodeInternal, "platforms: no fleet configured for connection tests")
	}
	fl := s.cfg.Fleet
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout*time.Duration(fleet.MaxJumps+1))
	defer cancel()
	p, err := fl.Platform(ctx, id)
	if err != nil {
		return TestResult{}, err
	}
	tgt, err := fl.Target(ctx, p, s.cfg.HostKeyPolicy)
	if err != nil {
		return TestResult{}, testum.Conflict("%v", err)
	}
	audit := func(res TestResult, outcome testum.AuditOutcome) {
		e := by.Entry("platform.test", Target(p), map[string]any{"state": res.State})
		e.Outcome = outcome
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := fl.Audit(actx, e); err != nil {
			s.cfg.Logger.Error("audit write failed", "action", e.Action, "err", err)
		}
	}
	start := time.Now()
	client, err := sshx.Dial(ctx, tgt, sshx.Config{ConnectTimeout: s.cfg.ConnectTimeout, Deny: s.cfg.TargetDeny})
	res := TestResult{Millis: time.Since(start).Milliseconds()}
	if err != nil {
		var de *sshx.DialError
		res.State, res.Message = string(testum.HostUnreachable), err.Error()
		if errors.As(err, &de) {
			res.State = string(de.Failure.HostState())
			res.Message = fl.DescribeDialError(ctx, de)
			if de.Offered != nil {
				res.Fingerprint = sshx.Fingerprint(de.Offered)
			}
			// A rejected key is offered on the platform of the hop that
			// presented it: the target's or a jump host's.
			if _, err := fl.RecordOffered(ctx, de); err != nil {
				s.cfg.Logger.Warn("recording offered host key", "platform", de.HopID, "err", err)
			}
			if de.Hop != "" && de.HopID != 0 && de.HopID != p.ID {
				_ = fl.PlatformRecordContact(ctx, de.HopID, testum.PlatformState(res.State), res.Message)
			}
		}
		_ = fl.PlatformRecordContact(ctx, p.ID, testum.PlatformState(res.State), res.Message)
		audit(res, testum.AuditFailed)
		return res, nil
	}
	defer func() { _ = client.Close() }() // the test's result is decided; a close error says nothing more
	hops := client.Hops()
	last := hops[len(hops)-1]
	// Every hop seen for the first time is pinned on its own platform, as a
	// run would pin it.
	pinned, err := fl.PinFirstContacts(ctx, hops)
	if err != nil {
		res.State, res.Message = string(testum.HostHostKeyRejected), fmt.Sprintf("ssh %s: %v", tgt.Addr, err)
		_ = fl.PlatformRecordContact(ctx, p.ID, testum.PlatformState(res.State), res.Message)
		audit(res, testum.AuditFailed)
		return res, nil
	}
	res.OK, res.State, res.Message = true, string(testum.HostOK), "reachable, host key accepted, logged in as "+p.Username
	res.Fingerprint = sshx.Fingerprint(last.HostKey)
	for _, h := range pinned {
		res.Pinned = res.Pinned || h.ID == p.ID
	}
	_ = fl.PlatformRecordContact(ctx, p.ID, testum.PlatformReachable, "")
	audit(res, testum.AuditOK)
	return res, nil
}
