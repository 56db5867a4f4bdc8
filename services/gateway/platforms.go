package gateway

import (
	"github.com/gofiber/fiber/v2"

	"github.com/testum/testum/libs/api"
	"github.com/testum/testum/libs/platforms"
	"github.com/testum/testum/libs/testum"
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
	return c.JSON(platformJSON(p))
}

func (g *Gateway) platformCreate(c *fiber.Ctx) error {
	var req api.PlatformRequest
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
	return c.Status(fiber.StatusCreated).JSON(platformJSON(p))
}

// platformRequest turns a decoded platform request into the platforms
// service's.
func platformRequest(req api.PlatformRequest) (platforms.Request, error) {
	labels, err := parseLabels(req.Labels)
	if err != nil {
		return platforms.Request{}, err
	}
	return platforms.Request{
		Name: req.Name, Host: req.Host, Port: req.Port, Username: req.Username, CredentialID: req.CredentialID,
		Secret: platforms.Secret{AuthMethod: req.AuthMethod, Password: req.Password, PrivateKey: req.PrivateKey, Passphrase: req.Passphrase},
		Labels: labels, JumpPlatformID: req.JumpPlatformID, HostKeyPolicy: req.HostKeyPolicy,
	}, nil
}

func platformJSON(p testum.Platform) api.Platform {
	return api.Platform{
		ID: p.ID, Name: p.Name, Host: p.Host, Port: p.Port, Username: p.Username,
		AuthMethod: string(p.AuthMethod), CredentialID: p.CredentialID, Labels: p.Labels,
		JumpPlatformID: p.JumpPlatformID, HostKeyPolicy: string(p.HostKeyPolicy),
		HostKeyFingerprint: p.HostKeyFingerprint, OfferedFingerprint: p.OfferedFingerprint,
		State: p.State, StateDetail: p.StateDetail, LastContactAt: p.LastContactAt,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
	}
}
