package gateway

import (
	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/testum/testum/libs/auth"
)

// Route is one entry of the API surface, with the action the permission
// table knows it by.
type Route struct {
	Method string
	Path   string
	Action auth.Action
}

// routes lists the whole API surface. Every route names its action; the
// authorize middleware refuses any action missing from the permission table.
func (g *Gateway) routes() {
	app := g.app
	app.Use(securityHeaders)
	app.Use(g.recoverPanics)

	g.handle("GET", "/healthz", "health.read", g.healthz)
	g.handle("GET", "/readyz", "health.read", g.readyz)
	g.handle("GET", "/api/openapi.json", "console.read", g.openapi) // public, like the console's files

	g.handle("POST", "/api/auth/login", "auth.login", g.login)
	g.handle("POST", "/api/auth/logout", "auth.self", g.logout)
	g.handle("GET", "/api/auth/me", "auth.self", g.me)
	g.handle("POST", "/api/auth/master_key", "auth.self", g.rotateMasterKey)

	g.handle("GET", "/api/users", "user.manage", g.userList)
	g.handle("POST", "/api/users", "user.manage", g.userCreate)
	g.handle("PUT", "/api/users/:id", "user.manage", g.userUpdate)
	g.handle("PATCH", "/api/users/:id", "user.manage", g.userUpdate)
	g.handle("DELETE", "/api/users/:id", "user.manage", g.userDelete)
	g.handle("POST", "/api/users/:id/reset_key", "user.manage", g.userResetKey)
	g.handle("GET", "/api/sessions", "session.manage", g.sessionList)
	g.handle("DELETE", "/api/sessions/:id", "session.manage", g.sessionDelete)
	g.handle("GET", "/api/audit", "audit.read", g.auditList)

	g.handle("GET", "/api/platforms/", "platform.read", g.platformSearch)
	g.handle("POST", "/api/platforms/", "platform.create", g.platformCreate)
	g.handle("POST", "/api/platforms/import", "platform.create", g.platformImport)
	g.handle("GET", "/api/platforms/:id", "platform.read", g.platformGet)
	g.handle("POST", "/api/platforms/:id/run_command", "platform.run", g.platformRunCommand)
	g.handle("PUT", "/api/platforms/:id", "platform.update", g.platformUpdate)
	g.handle("DELETE", "/api/platforms/:id", "platform.delete", g.platformDelete)
	g.handle("POST", "/api/platforms/:id/test", "platform.run", g.platformTest)
	g.handle("GET", "/api/platforms/:id/host_key", "platform.read", g.hostKeyGet)
	g.handle("POST", "/api/platforms/:id/host_key/accept", "platform.host_key", g.hostKeyAccept)
	g.handle("POST", "/api/platforms/:id/deploy_keys", "key.deploy", g.deployKeys)
	g.handle("POST", "/api/platforms/:id/revoke_keys", "key.deploy", g.revokeKeys)

	g.handle("GET", "/api/credentials", "credential.read", g.credentialList)
	g.handle("POST", "/api/credentials", "credential.manage", g.credentialCreate)
	g.handle("DELETE", "/api/credentials/:id", "credential.manage", g.credentialDelete)

	g.handle("GET", "/api/keys/", "key.read", g.keyList)
	g.handle("POST", "/api/keys/", "key.manage", g.keyCreate)
	g.handle("GET", "/api/keys/identity", "key.read", g.identityGet)
	g.handle("POST", "/api/keys/identity", "key.manage", g.identityCreate)
	g.handle("DELETE", "/api/keys/:id", "key.manage", g.keyDelete)
	g.handle("POST", "/api/keys/deploy", "key.deploy", g.deployKeysMany)
	g.handle("POST", "/api/keys/revoke", "key.deploy", g.revokeKeysMany)

	g.handle("GET", "/api/runs", "run.read", g.runList)
	g.handle("POST", "/api/runs", "run.create", g.runCreate)
	g.handle("POST", "/api/runs/preview", "run.create", g.runPreview)
	g.handle("GET", "/api/runs/:id", "run.read", g.runGet)
	g.handle("POST", "/api/runs/:id/cancel", "run.cancel", g.runCancel)
	g.handle("POST", "/api/runs/:id/rerun", "run.create", g.runRerun)
	g.handle("GET", "/api/runs/:id/summary", "run.read", g.runSummary)
	g.handle("GET", "/api/runs/:id/logs", "run.read", g.runLogs)
	g.handle("GET", "/api/runs/:id/hosts/:idx/log", "run.read", g.runHostLog)
	g.handle("GET", "/api/executors", "run.read", g.executorList)

	g.handle("GET", "/ws/tasks/:id", "run.watch", g.checkOrigin, g.wsUpgrade, websocket.New(g.wsTask, websocket.Config{
		ReadBufferSize:  4096,
		WriteBufferSize: 64 << 10,
	}))

	g.handle("GET", "/*", "console.read", g.console) // the web console; last, after every API route

	app.Use(func(c *fiber.Ctx) error {
		return fiber.NewError(fiber.StatusNotFound, "no such route: "+c.Method()+" "+c.Path())
	})
}

// handle registers a route behind authentication and authorization.
func (g *Gateway) handle(method, path string, action auth.Action, handlers ...fiber.Handler) {
	g.table = append(g.table, Route{Method: method, Path: path, Action: action})
	chain := append([]fiber.Handler{g.withDeadline, g.authenticate(action), g.authorize(action)}, handlers...)
	g.app.Add(method, path, chain...)
	if method == "GET" {
		// Fiber answers HEAD for GET routes only when asked.
		g.app.Add("HEAD", path, chain...)
	}
}

// Routes returns the API surface, for the route × role test and the docs.
func (g *Gateway) Routes() []Route { return append([]Route(nil), g.table...) }
