package gateway

import (
	"net/http"
	"testing"
)

// Every status an error can carry maps to a code that is not empty, and
// the ones with a code of their own keep it.
func TestCodeOfStatusNeverEmpty(t *testing.T) {
	want := map[int]string{
		http.StatusBadRequest:                  "invalid",
		http.StatusUnauthorized:                "unauthorized",
		http.StatusNotFound:                    "not_found",
		http.StatusMethodNotAllowed:            "method_not_allowed",
		http.StatusRequestTimeout:              "request_timeout",
		http.StatusRequestEntityTooLarge:       "body_too_large",
		http.StatusUnsupportedMediaType:        "unsupported_media_type",
		http.StatusUpgradeRequired:             "upgrade_required",
		http.StatusRequestHeaderFieldsTooLarge: "headers_too_large",
		http.StatusTooManyRequests:             "too_many",
		http.StatusInternalServerError:         "internal",
		http.StatusServiceUnavailable:          "unavailable",
		http.StatusTeapot:                      "invalid",
		http.StatusBadGateway:                  "internal",
	}
	for status, code := range want {
		if got := codeOfStatus(status); got != code {
			t.Errorf("codeOfStatus(%d) = %q, want %q", status, got, code)
		}
	}
	for status := 400; status < 600; status++ {
		if codeOfStatus(status) == "" {
			t.Errorf("codeOfStatus(%d) is empty", status)
		}
	}
}
