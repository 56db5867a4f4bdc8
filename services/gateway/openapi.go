package gateway

import (
	"github.com/gofiber/fiber/v2"
)

// openapi serves the API's OpenAPI document (libs/api/openapi.yaml), read
// and converted to JSON once, at New.
func (g *Gateway) openapi(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Set(fiber.HeaderCacheControl, "no-cache")
	return c.Send(g.spec)
}
