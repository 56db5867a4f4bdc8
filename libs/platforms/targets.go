package platforms

import (
	"github.com/testum/testum/libs/testum"
)

// checkTarget applies the target policy (TESTUM_TARGET_DENY) to a
// platform's host. Only an address can be judged here; a host name is
// judged on what it resolves to when the executor (or a platform test)
// dials it, which refuses denied addresses before connecting.
func (s *Service) checkTarget(host string) error {
	if err := s.cfg.TargetDeny.CheckHost(host); err != nil {
		return &testum.Error{Code: testum.CodeInvalid, Reason: "target_denied", Message: "host: " + err.Error()}
	}
	return nil
}
