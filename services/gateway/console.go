package gateway

import (
	"embed"
	"io/fs"
	"mime"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// consoleFiles holds the built console. `make web` writes it to
// web/dist/app; a fresh clone has only web/dist/README.txt, so the gateway
// compiles (and go vet runs) before npm has built anything.
//
//go:embed web/dist
var consoleFiles embed.FS

// consoleRoot is the console's document root inside consoleFiles.
const consoleRoot = "web/dist/app"

// consoleFS returns the built console, or nil when it was not built.
func consoleFS() fs.FS {
	sub, err := fs.Sub(consoleFiles, consoleRoot)
	if err != nil {
		return nil
	}
	if _, err := fs.Stat(sub, "index.html"); err != nil {
		return nil
	}
	return sub
}

const consoleNotBuilt = `<!doctype html><meta charset="utf-8"><title>testum</title>
<p>The testum console was not built into this binary. Run <code>make web</code> (or <code>make build</code>) and rebuild.
The API under /api works without it.</p>`

// safeHost is what a Host header may hold to be named in the CSP.
var safeHost = regexp.MustCompile(`^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$`)

// consoleHeaders sets the security headers of every console response. The
// CSP allows scripts only from the gateway itself (Vite emits no inline
// script) and connections only back to it, WebSockets included (named
// explicitly: older browsers do not count ws: as 'self'). <style> elements
// may be inline because xterm.js creates them at run time for its theme and
// cell metrics; style attributes in markup stay forbidden.
func consoleHeaders(c *fiber.Ctx) {
	connect := "'self'"
	if h := c.Hostname(); safeHost.MatchString(h) {
		connect += " ws://" + h + " wss://" + h
	}
	c.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; "+
		"style-src-elem 'self' 'unsafe-inline'; style-src-attr 'none'; img-src 'self' data:; font-src 'self'; "+
		"connect-src "+connect+"; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	c.Set("X-Content-Type-Options", "nosniff")
	c.Set("X-Frame-Options", "DENY")
	c.Set("Referrer-Policy", "no-referrer")
	c.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// console serves the single-page console: a file of the build when the path
// names one, else index.html so that the console's own router handles deep
// links (/runs/…). Paths under /api and /ws are never the console: they
// fall through to the JSON 404.
func (g *Gateway) console(c *fiber.Ctx) error {
	p := c.Path()
	if p == "/api" || p == "/ws" || strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/ws/") {
		return c.Next()
	}
	consoleHeaders(c)
	root := consoleFS()
	if root == nil {
		c.Set(fiber.HeaderCacheControl, "no-store")
		c.Type("html", "utf-8")
		return c.Status(fiber.StatusServiceUnavailable).SendString(consoleNotBuilt)
	}
	name := strings.TrimPrefix(path.Clean("/"+p), "/")
	if name != "" && name != "index.html" {
		if data, err := fs.ReadFile(root, name); err == nil {
			if ct := mime.TypeByExtension(filepath.Ext(name)); ct != "" {
				c.Set(fiber.HeaderContentType, ct)
			}
			if strings.HasPrefix(name, "assets/") {
				// Vite names assets by content hash: they never change.
				c.Set(fiber.HeaderCacheControl, "public, max-age=31536000, immutable")
			} else {
				c.Set(fiber.HeaderCacheControl, "no-cache")
			}
			return c.Send(data)
		}
		if strings.HasPrefix(name, "assets/") || path.Ext(name) != "" {
			return fiber.NewError(fiber.StatusNotFound, "no such file: "+p)
		}
	}
	data, err := fs.ReadFile(root, "index.html")
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Type("html", "utf-8")
	return c.Send(data)
}
