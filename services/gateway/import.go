package gateway

import (
	"net/http"

	"github.com/gofiber/fiber/v2"

	apiclient "github.com/testum/testum/libs/api/client"
)

// platformImport is POST /api/platforms/import (see platforms.Import).
func (g *Gateway) platformImport(c *fiber.Ctx) error {
	var req apiclient.ImportRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	created, items, err := g.platforms.Import(c.UserContext(), g.actor(c), importRequest(req))
	if err != nil {
		return err
	}
	return c.Status(http.StatusOK).JSON(importResultWire(created, items))
}
