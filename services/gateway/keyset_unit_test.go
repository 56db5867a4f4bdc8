package gateway

import (
	"io"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/gofiber/fiber/v2"
)

// A keyset page was read one item longer than its limit: the extra item
// only says that a next page follows, whose link starts after the last item
// shown and drops any offset.
func TestSendKeysetPage(t *testing.T) {
	for _, tc := range []struct {
		name      string
		items     []int64
		wantBody  string
		wantLink  string
		wantTotal string
	}{
		{"a next page follows", []int64{5, 4, 3}, "[5,4]", `</api/audit?action=run&before_id=4&limit=2>; rel="next"`, "9"},
		{"the last page", []int64{2, 1}, "[2,1]", "", "9"},
		{"past the end", nil, "[]", "", "9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := fiber.New()
			app.Get("/api/audit", func(c *fiber.Ctx) error {
				return sendKeysetPage(c, tc.items, 9, 2, func(id int64) string { return strconv.FormatInt(id, 10) })
			})
			resp, err := app.Test(httptest.NewRequest("GET", "/api/audit?action=run&before_id=9&limit=2&offset=3", nil))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if string(body) != tc.wantBody {
				t.Errorf("body %s, want %s", body, tc.wantBody)
			}
			if got := resp.Header.Get("Link"); got != tc.wantLink {
				t.Errorf("Link %q, want %q", got, tc.wantLink)
			}
			if got := resp.Header.Get("X-Total-Count"); got != tc.wantTotal {
				t.Errorf("X-Total-Count %q, want %q", got, tc.wantTotal)
			}
		})
	}
}
