package gateway

import (
	"github.com/gofiber/fiber/v2"

	apiclient "github.com/testum/testum/libs/api/client"
)

func (g *Gateway) platformGet(c *fiber.Ctx) error {
	id, err := paramID(c, "id")
	if err != nil {
		return err
	}
	p, err := g.st.Platform(c.UserContext(), id)
	if err != nil {
		return err
	}
	return c.JSON(platformWire(p))
}

func (g *Gateway) platformCreate(c *fiber.Ctx) error {
	var req apiclient.PlatformRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	pr, err := platformRequest(req)
	if err != nil {
		return err
	}
	p, err := g.platforms.Create(c.UserContext(), g.actor(c), pr)
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(platformWire(p))
}
