package gateway

import (
	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"

	"github.com/testum/testum/libs/testum"
)

// healthz says the process serves HTTP.
func (g *Gateway) healthz(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"status": "ok"})
}

// readyz says the gateway can do its work: PostgreSQL answers and NATS is
// connected.
func (g *Gateway) readyz(c *fiber.Ctx) error {
	if err := g.st.Ping(c.UserContext()); err != nil {
		return testum.Errorf(testum.CodeUnavailable, "postgres not ready: %v", err)
	}
	if s := g.nc.Status(); s != nats.CONNECTED {
		return testum.Errorf(testum.CodeUnavailable, "nats not ready: %s", s)
	}
	return c.JSON(fiber.Map{"status": "ready"})
}
