package gateway

import (
	"context"
	"errors"
	"net/http"

	"github.com/gofiber/fiber/v2"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/testum"
)

// statusOf maps an error code to its HTTP status, once for the whole API.
var statusOf = map[testum.Code]int{
	testum.CodeInvalid:      http.StatusBadRequest,
	testum.CodeUnauthorized: http.StatusUnauthorized,
	testum.CodeForbidden:    http.StatusForbidden,
	testum.CodeNotFound:     http.StatusNotFound,
	testum.CodeConflict:     http.StatusConflict,
	testum.CodeTooMany:      http.StatusTooManyRequests,
	testum.CodeUnavailable:  http.StatusServiceUnavailable,
	testum.CodeInternal:     http.StatusInternalServerError,
}

// errorHandler turns every error a handler returns into {"error": "..."}
// with the status of its code. Internal errors are logged and shown as a
// generic message: their text may name internals.
func (g *Gateway) errorHandler(c *fiber.Ctx, err error) error {
	var fe *fiber.Error
	if errors.As(err, &fe) {
		msg := fe.Message
		if fe.Code == fiber.StatusRequestEntityTooLarge {
			msg = "request body too large"
		}
		return c.Status(fe.Code).JSON(apiclient.Error{Error: msg, Code: apiclient.ErrorCode(codeOfStatus(fe.Code))})
	}
	var te *testum.Error
	if errors.As(err, &te) {
		status, known := statusOf[te.Code]
		if !known {
			status = http.StatusInternalServerError
		}
		if status >= 500 {
			g.log.Error("request failed", "method", c.Method(), "path", c.Path(), "err", err)
		}
		if status == http.StatusTooManyRequests {
			if ra, ok := c.Locals("retry_after").(string); ok {
				c.Set(fiber.HeaderRetryAfter, ra)
			}
		}
		if status == http.StatusServiceUnavailable {
			// A dependency that is down or restarting: a client may retry soon.
			c.Set(fiber.HeaderRetryAfter, "1")
		}
		code := te.Reason
		if code == "" && known {
			code = string(te.Code)
		}
		if code == "" {
			code = string(testum.CodeInternal)
		}
		return c.Status(status).JSON(apiclient.Error{Error: te.Message, Code: apiclient.ErrorCode(code)})
	}
	g.log.Error("request failed", "method", c.Method(), "path", c.Path(), "err", err)
	if errors.Is(err, context.DeadlineExceeded) {
		// The request's deadline passed (a database or NATS that is slow or
		// restarting): the client may retry.
		c.Set(fiber.HeaderRetryAfter, "1")
		return c.Status(http.StatusServiceUnavailable).JSON(apiclient.Error{Error: "the request took too long; try again", Code: apiclient.ErrorCode(testum.CodeUnavailable)})
	}
	return c.Status(http.StatusInternalServerError).JSON(apiclient.Error{Error: "internal error", Code: apiclient.ErrorCode(testum.CodeInternal)})
}

// statusCodes names the codes of the statuses that only Fiber and fasthttp
// answer with: a body over the limit, a method not allowed, a request or its
// headers too slow or too large, a plain GET of a WebSocket route.
var statusCodes = map[int]string{
	http.StatusMethodNotAllowed:            "method_not_allowed",
	http.StatusRequestTimeout:              "request_timeout",
	http.StatusRequestEntityTooLarge:       "body_too_large",
	http.StatusUnsupportedMediaType:        "unsupported_media_type",
	http.StatusUpgradeRequired:             "upgrade_required",
	http.StatusRequestHeaderFieldsTooLarge: "headers_too_large",
}

// codeOfStatus names the code of a Fiber error (a route that does not
// exist, a method not allowed) by its status. Every status has one: a
// status no code names falls back to its class, invalid or internal.
func codeOfStatus(status int) string {
	if code, ok := statusCodes[status]; ok {
		return code
	}
	for code, st := range statusOf {
		if st == status {
			return string(code)
		}
	}
	if status >= 500 {
		return string(testum.CodeInternal)
	}
	return string(testum.CodeInvalid)
}
