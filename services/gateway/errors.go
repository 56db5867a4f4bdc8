package gateway

import (
	"context"
	"errors"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/testum/testum/libs/api"
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
		msg, code := fe.Message, codeOfStatus(fe.Code)
		switch fe.Code {
		case fiber.StatusRequestEntityTooLarge:
			msg, code = "request body too large", "body_too_large"
		case fiber.StatusUnsupportedMediaType:
			code = "unsupported_media_type"
		}
		return c.Status(fe.Code).JSON(api.Error{Error: msg, Code: code})
	}
	var te *testum.Error
	if errors.As(err, &te) {
		status := statusOf[te.Code]
		if status == 0 {
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
		code := te.Reason
		if code == "" {
			code = string(te.Code)
		}
		return c.Status(status).JSON(api.Error{Error: te.Message, Code: code})
	}
	g.log.Error("request failed", "method", c.Method(), "path", c.Path(), "err", err)
	if errors.Is(err, context.DeadlineExceeded) {
		// The request's deadline passed (a database or NATS that is slow or
		// restarting): the client may retry.
		c.Set(fiber.HeaderRetryAfter, "1")
		return c.Status(http.StatusServiceUnavailable).JSON(api.Error{Error: "the request took too long; try again", Code: string(testum.CodeUnavailable)})
	}
	return c.Status(http.StatusInternalServerError).JSON(api.Error{Error: "internal error", Code: string(testum.CodeInternal)})
}

// codeOfStatus names the code of a Fiber error (a route that does not
// exist, a method not allowed) by its status, when one code has it.
func codeOfStatus(status int) string {
	for code, st := range statusOf {
		if st == status {
			return string(code)
		}
	}
	return ""
}
