package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/testum/testum/libs/testum"
)

// JSON bodies of ordinary routes are small: 1 MiB bounds what one request
// makes the gateway decode. Two routes carry more and keep the server's
// whole body limit (Config.MaxBodyBytes, 8 MiB by default): a run, whose
// script may be 4 MiB before JSON escaping, and an inventory import.
const jsonBodyLimit = 1 << 20

var largeBodyRoutes = map[string]bool{
	"/api/runs":             true,
	"/api/platforms/import": true,
}

// decode reads a JSON body into v, with a clear error for what is wrong.
// Unknown fields are ignored (older clients send extra ones).
func decode(c *fiber.Ctx, v any) error {
	body := c.Body()
	if len(body) > jsonBodyLimit && !largeBodyRoutes[c.Route().Path] {
		return fiber.NewError(fiber.StatusRequestEntityTooLarge, "request body too large")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return testum.Invalid("request body is empty: expected a JSON object")
	}
	// encoding/json replaces invalid UTF-8 with U+FFFD without a word: a
	// name or command would be stored other than it was sent.
	if !utf8.Valid(body) {
		return &testum.Error{Code: testum.CodeInvalid, Reason: "invalid_utf8", Message: "request body is not valid UTF-8"}
	}
	// PostgreSQL's text and jsonb hold no NUL: refused here, once for every
	// field (a login name, a label, a command), rather than as a 500 later.
	if hasNULEscape(body) {
		return &testum.Error{Code: testum.CodeInvalid, Reason: "nul_character", Message: `request body holds a NUL character (\u0000): no field may contain one`}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return testum.Invalid("malformed JSON at byte %d: %v", se.Offset, se)
		case errors.As(err, &te):
			if te.Field != "" {
				return testum.Invalid("field %q: expected %s, got JSON %s", te.Field, te.Type, te.Value)
			}
			return testum.Invalid("expected a JSON object, got JSON %s", te.Value)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return testum.Invalid("malformed JSON: unexpected end of input")
		default:
			return testum.Invalid("malformed JSON: %v", err)
		}
	}
	if dec.More() {
		return testum.Invalid("malformed JSON: more than one value in the body")
	}
	return nil
}

// hasNULEscape reports whether a JSON text holds the escape \u0000 (a raw
// NUL byte is a syntax error already). The escape is a NUL only when its
// backslash is not itself escaped: an odd run of backslashes before "u0000".
func hasNULEscape(body []byte) bool {
	for i := 0; ; {
		j := bytes.Index(body[i:], []byte(`u0000`))
		if j < 0 {
			return false
		}
		j += i
		n := 0
		for k := j - 1; k >= 0 && body[k] == '\\'; k-- {
			n++
		}
		if n%2 == 1 {
			return true
		}
		i = j + 1
	}
}

// paramID reads a positive integer path parameter.
func paramID(c *fiber.Ctx, name string) (int64, error) {
	s := c.Params(name)
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, testum.NotFound("%s %q not found: ids are positive integers", strings.TrimSuffix(name, "id"), s)
	}
	return id, nil
}

// page reads ?limit= and ?offset= (limit 1..1000, default 100).
func page(c *fiber.Ctx) (limit, offset int, err error) {
	limit, offset = 100, 0
	if s := c.Query("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 1000 {
			return 0, 0, testum.Invalid("limit %q: want 1 to 1000", s)
		}
	}
	if s := c.Query("offset"); s != "" {
		if offset, err = strconv.Atoi(s); err != nil || offset < 0 {
			return 0, 0, testum.Invalid("offset %q: want 0 or more", s)
		}
	}
	return limit, offset, nil
}

// sendPage answers a list as a JSON array (the seed's shape) with the total
// in X-Total-Count and the next page in a Link header.
func sendPage[T any](c *fiber.Ctx, items []T, total, limit, offset int) error {
	c.Set("X-Total-Count", strconv.Itoa(total))
	if offset+len(items) < total {
		q := c.Request().URI().QueryArgs()
		q.Set("offset", strconv.Itoa(offset+limit))
		q.Set("limit", strconv.Itoa(limit))
		c.Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, c.Path(), q.String()))
	}
	if items == nil {
		items = []T{}
	}
	return c.JSON(items)
}

// sendKeysetPage answers a page read after a cursor (?before_id=): the
// next page's Link names the last item's id as its cursor. The page was
// read one item longer than limit to know whether another one follows.
func sendKeysetPage[T any](c *fiber.Ctx, items []T, total, limit int, idOf func(T) string) error {
	c.Set("X-Total-Count", strconv.Itoa(total))
	if len(items) > limit {
		items = items[:limit]
		q := c.Request().URI().QueryArgs()
		q.Del("offset")
		q.Set("before_id", idOf(items[len(items)-1]))
		q.Set("limit", strconv.Itoa(limit))
		c.Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, c.Path(), q.String()))
	}
	if items == nil {
		items = []T{}
	}
	return c.JSON(items)
}

// parseLabels reads labels given as a JSON object or as "k=v,k2=v2"; the
// platforms service validates them.
func parseLabels(raw json.RawMessage) (map[string]string, error) {
	out := map[string]string{}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return out, nil
	}
	var m map[string]string
	if raw[0] == '{' {
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, testum.Invalid("labels: want an object of strings or \"key=value,...\": %v", err)
		}
	} else {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, testum.Invalid("labels: want an object of strings or \"key=value,...\"")
		}
		var err error
		if m, err = testum.ParseLabelList(s); err != nil {
			return nil, err
		}
	}
	for k, v := range m {
		out[k] = v
	}
	return out, nil
}
