package gateway

import (
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// isDownload says whether a path is one of the log downloads, which stream
// bodies of any size.
func isDownload(path string) bool {
	rest, ok := strings.CutPrefix(path, "/api/runs/")
	if !ok {
		return false
	}
	return strings.HasSuffix(rest, "/logs") || strings.HasSuffix(rest, "/log")
}

// requestConfig gives log downloads a write deadline of their own: fasthttp
// applies WriteTimeout to the whole response, a streamed one included, so
// the API's minute would cut a large log short on a slow link.
func (g *Gateway) requestConfig(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	path, _, _ := strings.Cut(string(h.RequestURI()), "?")
	if string(h.Method()) == fiber.MethodGet && isDownload(path) {
		return fasthttp.RequestConfig{WriteTimeout: g.cfg.DownloadWrite}
	}
	return fasthttp.RequestConfig{}
}

// securityHeaders sets what every response carries: no MIME sniffing (a log
// or an error never renders as HTML), no Referer (URLs name runs and
// hosts), no framing (clickjacking). API answers are private and often
// carry tokens or one-time secrets: never cached. The console sets its own,
// fuller CSP and its caching in console.go, which override these.
func securityHeaders(c *fiber.Ctx) error {
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
	c.Set(fiber.HeaderContentSecurityPolicy, "default-src 'none'; frame-ancestors 'none'")
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Next()
}
