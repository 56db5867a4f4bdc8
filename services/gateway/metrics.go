package gateway

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"

	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/metrics"
)

// otherRoute labels requests no route of the table answered (404s), so
// that raw paths never become label values.
const otherRoute = "other"

// initMetrics takes the process's metrics (a registry of its own when nil)
// once the route table is complete.
func (g *Gateway) initMetrics(m *metrics.Metrics) {
	if m == nil {
		m = metrics.New()
	}
	g.m = m
	g.scrape = adaptor.HTTPHandler(m.Handler())
	g.routeSet = make(map[string]bool, len(g.table))
	for _, r := range g.table {
		g.routeSet[r.Path] = true
	}
	m.ReadSessionsActive(func(ctx context.Context) (float64, error) {
		_, n, err := g.st.SessionList(ctx, true, g.cfg.SessionIdle, 1, 0)
		return float64(n), err
	})
}

// observeHTTP counts every request by route pattern and status, and times
// it. It is the outermost middleware: an error is answered here (by the
// error handler) so that its status is the one counted.
func (g *Gateway) observeHTTP(c *fiber.Ctx) error {
	start := time.Now()
	if err := c.Next(); err != nil {
		if herr := g.errorHandler(c, err); herr != nil {
			c.Status(fiber.StatusInternalServerError)
		}
	}
	route := otherRoute
	if r := c.Route(); r != nil && g.routeSet[r.Path] {
		route = r.Path
	}
	g.m.HTTPDuration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	g.m.HTTPRequests.WithLabelValues(route, strconv.Itoa(c.Response().StatusCode())).Inc()
	return nil
}

// metricsGet serves the process's metrics in the Prometheus text format.
func (g *Gateway) metricsGet(c *fiber.Ctx) error { return g.scrape(c) }

// scrapeByToken reports whether the request is a scrape of /metrics with
// the metrics token: it needs no session. The token is compared in
// constant time and never logged.
func (g *Gateway) scrapeByToken(c *fiber.Ctx, action auth.Action) bool {
	if action != auth.ActionMetricsRead || g.cfg.MetricsToken == "" {
		return false
	}
	t, ok := strings.CutPrefix(c.Get(fiber.HeaderAuthorization), "Bearer ")
	return ok && metrics.TokenMatches(g.cfg.MetricsToken, strings.TrimSpace(t))
}

// wsCounted counts an open WebSocket until the returned func.
func (g *Gateway) wsCounted() func() {
	g.m.WebSocketClients.Inc()
	return g.m.WebSocketClients.Dec
}
