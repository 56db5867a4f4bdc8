// Package apitest holds what tests need to hold the API to its contract: an
// HTTP transport that validates every response against libs/api/openapi.yaml,
// and a check of WebSocket messages. It is for tests only.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/testum/testum/libs/api"
)

// contract is the OpenAPI document, loaded and checked once, with a router
// that finds the operation of a request.
type contract struct {
	doc    *openapi3.T
	router routers.Router
}

var load = sync.OnceValues(func() (*contract, error) {
	// The run's log archive: bytes the validator need not look into.
	openapi3filter.RegisterBodyDecoder("application/gzip", openapi3filter.FileBodyDecoder)
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPIYAML())
	if err != nil {
		return nil, fmt.Errorf("load openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapi.yaml is not a valid document: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml: router: %w", err)
	}
	return &contract{doc: doc, router: router}, nil
})

// Document returns the OpenAPI document, validated.
func Document() (*openapi3.T, error) {
	k, err := load()
	if err != nil {
		return nil, err
	}
	return k.doc, nil
}

type testKey struct{}

// WithTest names the test a request belongs to: a response that breaks the
// contract fails that test.
func WithTest(ctx context.Context, t testing.TB) context.Context {
	return context.WithValue(ctx, testKey{}, t)
}

// strays collects the breaches of requests made without a test in their
// context; Main fails the package on any.
var strays struct {
	mu   sync.Mutex
	list []string
}

func report(ctx context.Context, msg string) {
	if t, ok := ctx.Value(testKey{}).(testing.TB); ok {
		t.Errorf("%s", msg)
		return
	}
	strays.mu.Lock()
	strays.list = append(strays.list, msg)
	strays.mu.Unlock()
}

// Main returns the exit code of a test binary whose tests ended with code:
// 1 if a response of a request that named no test broke the contract
// (each is printed), else code.
func Main(code int) int {
	strays.mu.Lock()
	defer strays.mu.Unlock()
	for _, msg := range strays.list {
		fmt.Fprintln(os.Stderr, "contract:", msg)
	}
	if len(strays.list) > 0 && code == 0 {
		return 1
	}
	return code
}

// Transport validates every response that passes through base against the
// OpenAPI document: the status must be documented for the operation, the
// headers and the body must match its schema. A path outside /api and /ws
// is the console's and is not checked; an error on a path the document
// does not have must still be an Error.
func Transport(base http.RoundTripper) http.RoundTripper { return transport{base} }

type transport struct{ base http.RoundTripper }

func (tr transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := tr.base.RoundTrip(req)
	if err != nil || resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close() // read to the end; nothing to report
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return resp, nil // the caller sees the short body
	}
	if msg := Check(req, resp.StatusCode, resp.Header, body); msg != "" {
		report(req.Context(), msg)
	}
	return resp, nil
}

// Check says how a response to req breaks the contract, or "".
func Check(req *http.Request, status int, header http.Header, body []byte) string {
	k, err := load()
	if err != nil {
		return err.Error()
	}
	what := fmt.Sprintf("%s %s → %d", req.Method, req.URL.Path, status)
	find := req
	if req.Method == http.MethodHead { // Fiber answers HEAD for every GET route
		find = req.Clone(req.Context())
		find.Method = http.MethodGet
	}
	route, params, err := k.router.FindRoute(find)
	if err != nil {
		apiPath := strings.HasPrefix(req.URL.Path, "/api/") || strings.HasPrefix(req.URL.Path, "/ws/")
		if !apiPath || status < 400 || req.Method == http.MethodHead {
			return ""
		}
		if msg := checkSchema(k, "Error", header, body); msg != "" {
			return what + ": " + msg
		}
		return ""
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: find, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status: status,
		Header: header,
		Body:   io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
			ExcludeResponseBody: req.Method == http.MethodHead},
	}
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		return fmt.Sprintf("%s breaks openapi.yaml: %v\nbody: %.600s", what, err, body)
	}
	return ""
}

// checkSchema validates a JSON body against a schema of the components.
func checkSchema(k *contract, schema string, header http.Header, body []byte) string {
	if header != nil {
		if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			return fmt.Sprintf("Content-Type %q, want a %s in JSON: %.300s", ct, schema, body)
		}
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Sprintf("not JSON: %.300s", body)
	}
	if err := k.doc.Components.Schemas[schema].Value.VisitJSON(v, openapi3.MultiErrors()); err != nil {
		return fmt.Sprintf("not a %s: %v: %.300s", schema, err, body)
	}
	return ""
}

// CheckWSMessage says how one text frame of /ws/tasks/{id} breaks the
// WSMessage schema, or "".
func CheckWSMessage(frame []byte) string {
	k, err := load()
	if err != nil {
		return err.Error()
	}
	return checkSchema(k, "WSMessage", nil, frame)
}
