package gateway

import (
	"github.com/gofiber/fiber/v2"
)

// executorList lists the executors that heartbeat within ExecutorDeadAfter:
// the console's "executors online".
func (g *Gateway) executorList(c *fiber.Ctx) error {
	limit, offset, err := page(c)
	if err != nil {
		return err
	}
	list, err := g.st.ExecutorsOnline(c.UserContext(), g.cfg.ExecutorDeadAfter)
	if err != nil {
		return err
	}
	total := len(list)
	list = list[min(offset, total):min(offset+limit, total)]
	return sendPage(c, list, total, limit, offset)
}
