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
	app.Use(g.observeHTTP)
	app.Use(securityHeaders)
	app.Use(g.recoverPanics)

	g.handle("GET", "/healthz", auth.ActionHealthRead, g.healthz)
	g.handle("GET", "/readyz", auth.ActionHealthRead, g.readyz)
	g.handle("GET", "/api/openapi.json", auth.ActionConsoleRead, g.openapi) // public, like the console's files
	g.handle("GET", "/metrics", auth.ActionMetricsRead, g.metricsGet)

	g.handle("POST", "/api/auth/login", auth.ActionLogin, g.login)
	g.handle("POST", "/api/auth/logout", auth.ActionSelf, g.logout)
	g.handle("GET", "/api/auth/me", auth.ActionSelf, g.me)
	g.handle("POST", "/api/auth/master_key", auth.ActionSelf, g.rotateMasterKey)

	g.handle("GET", "/api/users", auth.ActionUserManage, g.userList)
	g.handle("POST", "/api/users", auth.ActionUserManage, g.userCreate)
	g.handle("PUT", "/api/users/:id", auth.ActionUserManage, g.userUpdate)
	g.handle("PATCH", "/api/users/:id", auth.ActionUserManage, g.userUpdate)
	g.handle("DELETE", "/api/users/:id", auth.ActionUserManage, g.userDelete)
	g.handle("POST", "/api/users/:id/reset_key", auth.ActionUserManage, g.userResetKey)
	g.handle("GET", "/api/sessions", auth.ActionSessionManage, g.sessionList)
	g.handle("DELETE", "/api/sessions/:id", auth.ActionSessionManage, g.sessionDelete)
	g.handle("GET", "/api/audit", auth.ActionAuditRead, g.auditList)

	g.handle("GET", "/api/platforms/", auth.ActionPlatformRead, g.platformSearch)
	g.handle("POST", "/api/platforms/", auth.ActionPlatformCreate, g.platformCreate)
	g.handle("POST", "/api/platforms/import", auth.ActionPlatformCreate, g.platformImport)
	g.handle("GET", "/api/platforms/:id", auth.ActionPlatformRead, g.platformGet)
	g.handle("POST", "/api/platforms/:id/run_command", auth.ActionPlatformRun, g.platformRunCommand)
	g.handle("PUT", "/api/platforms/:id", auth.ActionPlatformUpdate, g.platformUpdate)
	g.handle("DELETE", "/api/platforms/:id", auth.ActionPlatformDelete, g.platformDelete)
	g.handle("POST", "/api/platforms/:id/test", auth.ActionPlatformRun, g.platformTest)
	g.handle("GET", "/api/platforms/:id/host_key", auth.ActionPlatformRead, g.hostKeyGet)
	g.handle("POST", "/api/platforms/:id/host_key/accept", auth.ActionPlatformHostKey, g.hostKeyAccept)
	g.handle("POST", "/api/platforms/:id/deploy_keys", auth.ActionKeyDeploy, g.deployKeys)
	g.handle("POST", "/api/platforms/:id/revoke_keys", auth.ActionKeyDeploy, g.revokeKeys)

	g.handle("GET", "/api/credentials", auth.ActionCredentialRead, g.credentialList)
	g.handle("POST", "/api/credentials", auth.ActionCredentialManage, g.credentialCreate)
	g.handle("DELETE", "/api/credentials/:id", auth.ActionCredentialManage, g.credentialDelete)

	g.handle("GET", "/api/keys/", auth.ActionKeyRead, g.keyList)
	g.handle("POST", "/api/keys/", auth.ActionKeyManage, g.keyCreate)
	g.handle("GET", "/api/keys/identity", auth.ActionKeyRead, g.identityGet)
	g.handle("POST", "/api/keys/identity", auth.ActionKeyManage, g.identityCreate)
	g.handle("DELETE", "/api/keys/:id", auth.ActionKeyManage, g.keyDelete)
	g.handle("POST", "/api/keys/deploy", auth.ActionKeyDeploy, g.deployKeysMany)
	g.handle("POST", "/api/keys/revoke", auth.ActionKeyDeploy, g.revokeKeysMany)

	g.handle("GET", "/api/runs", auth.ActionRunRead, g.runList)
	g.handle("POST", "/api/runs", auth.ActionRunCreate, g.runCreate)
	g.handle("POST", "/api/runs/preview", auth.ActionRunCreate, g.runPreview)
	g.handle("GET", "/api/runs/:id", auth.ActionRunRead, g.runGet)
	g.handle("POST", "/api/runs/:id/cancel", auth.ActionRunCancel, g.runCancel)
	g.handle("POST", "/api/runs/:id/rerun", auth.ActionRunCreate, g.runRerun)
	g.handle("GET", "/api/runs/:id/summary", auth.ActionRunRead, g.runSummary)
	g.handle("GET", "/api/runs/:id/logs", auth.ActionRunRead, g.runLogs)
	g.handle("GET", "/api/runs/:id/hosts/:idx/log", auth.ActionRunRead, g.runHostLog)
	g.handle("GET", "/api/executors", auth.ActionRunRead, g.executorList)

	g.handle("GET", "/ws/tasks/:id", auth.ActionRunWatch, g.checkOrigin, g.wsUpgrade, websocket.New(g.wsTask, websocket.Config{
		ReadBufferSize:  4096,
		WriteBufferSize: 64 << 10,
	}))

	g.handle("GET", "/*", auth.ActionConsoleRead, g.console) // the web console; last, after every API route

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
