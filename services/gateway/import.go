package gateway

import (
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/testum/testum/libs/platforms"
)

// ImportRequest is POST /api/platforms/import (see platforms.Import).
type ImportRequest struct {
	Format       string            `json:"format"` // ssh_config, ansible_ini, ansible_yaml, or "" to detect
	Content      string            `json:"content"`
	Username     string            `json:"username"` // for entries without User / ansible_user
	AuthMethod   string            `json:"auth_method"`
	Password     *string           `json:"password,omitempty"`
	PrivateKey   *string           `json:"private_key,omitempty"`
	Passphrase   *string           `json:"passphrase,omitempty"`
	CredentialID *int64            `json:"credential_id,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"` // added to every entry
	// LabelsFromVars names the inventory variables that become labels.
	LabelsFromVars []string `json:"labels_from_vars,omitempty"`
}

func (g *Gateway) platformImport(c *fiber.Ctx) error {
	var req ImportRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	created, items, err := g.platforms.Import(c.UserContext(), g.actor(c), platforms.Import{
		Format: req.Format, Content: req.Content, Username: req.Username, CredentialID: req.CredentialID,
		Secret:         platforms.Secret{AuthMethod: req.AuthMethod, Password: req.Password, PrivateKey: req.PrivateKey, Passphrase: req.Passphrase},
		Labels:         req.Labels,
		LabelsFromVars: req.LabelsFromVars,
	})
	if err != nil {
		return err
	}
	return c.Status(http.StatusOK).JSON(fiber.Map{"created": created, "items": items})
}
