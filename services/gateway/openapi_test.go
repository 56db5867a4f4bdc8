package gateway_test

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/testum/testum/libs/api/apitest"
)

var fiberParam = regexp.MustCompile(`:([A-Za-z_]+)`)

// Every route of the route table is in the document, and the document has
// no operation the route table does not serve.
func TestOpenAPIRoutesMatchRouteTable(t *testing.T) {
	doc, err := apitest.Document()
	if err != nil {
		t.Fatal(err)
	}
	g := newEnv(t).start(nil)
	served := map[string]bool{}
	for _, rt := range g.Routes() {
		if rt.Path == "/*" { // the console
			continue
		}
		served[rt.Method+" "+fiberParam.ReplaceAllString(rt.Path, "{$1}")] = true
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	var missing, extra []string
	for r := range served {
		if !documented[r] {
			missing = append(missing, r)
		}
	}
	for r := range documented {
		if !served[r] {
			extra = append(extra, r)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	for _, r := range missing {
		t.Errorf("route %s is not in libs/api/openapi.yaml", r)
	}
	for _, r := range extra {
		t.Errorf("libs/api/openapi.yaml has %s, which no route serves", r)
	}
}

// The gateway serves the document, as JSON, to anyone; it is the embedded
// YAML's content.
func TestOpenAPIServed(t *testing.T) {
	g := newEnv(t).start(nil)
	r := g.client(t, nil).must(http.StatusOK, "GET", "/api/openapi.json", nil)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	served, err := openapi3.NewLoader().LoadFromData(r.Body)
	if err != nil {
		t.Fatalf("served document: %v", err)
	}
	doc, err := apitest.Document()
	if err != nil {
		t.Fatal(err)
	}
	if served.OpenAPI != "3.1.0" || served.Paths.Len() != doc.Paths.Len() || len(served.Components.Schemas) != len(doc.Components.Schemas) {
		t.Errorf("served document: openapi %q, %d paths, %d schemas; the YAML has %d paths, %d schemas",
			served.OpenAPI, served.Paths.Len(), len(served.Components.Schemas), doc.Paths.Len(), len(doc.Components.Schemas))
	}
}
