package gateway

import (
	"github.com/gofiber/fiber/v2"

	apiclient "github.com/testum/testum/libs/api/client"
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
	out := make([]apiclient.Executor, len(list))
	for i, e := range list {
		out[i] = executorWire(e)
	}
	return sendPage(c, out, total, limit, offset)
}
