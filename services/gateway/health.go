package gateway

import (
	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/testum"
)

// healthz says the process serves HTTP.
func (g *Gateway) healthz(c *fiber.Ctx) error {
	return c.JSON(apiclient.Status{Status: apiclient.StatusStatusOk})
}

// readyz says the gateway can do its work: PostgreSQL answers and NATS is
// connected. The answer says only ready or not: what failed (a database
// error may name hosts, users or versions) goes to the log, since the
// route is public.
func (g *Gateway) readyz(c *fiber.Ctx) error {
	if err := g.st.Ping(c.UserContext()); err != nil {
		g.log.Warn("not ready: postgres", "err", err)
		return testum.Errorf(testum.CodeUnavailable, "not ready")
	}
	if s := g.nc.Status(); s != nats.CONNECTED {
		g.log.Warn("not ready: nats", "status", s.String())
		return testum.Errorf(testum.CodeUnavailable, "not ready")
	}
	return c.JSON(apiclient.Status{Status: apiclient.StatusStatusReady})
}
