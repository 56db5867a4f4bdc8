package gateway

import (
	"github.com/testum/testum/libs/testum"
)

// checkTarget applies the target policy (TESTUM_TARGET_DENY) to a
// platform's host. Only an address can be judged here; a host name is
// judged on what it resolves to when the executor (or a platform test)
// dials it, which refuses denied addresses before connecting.
func (g *Gateway) checkTarget(host string) error {
	if err := g.cfg.TargetDeny.CheckHost(host); err != nil {
		// A 400 like any invalid field; its stable code is target_denied
		// once errors carry a finer code than their status class.
		return testum.Invalid("host: %v", err)
	}
	return nil
}
