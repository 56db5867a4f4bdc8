package gateway_test

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/testum/testum/libs/api/apitest"
	apiclient "github.com/testum/testum/libs/api/client"
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
	r := got(g.anon(t).OpenapiWithResponse(t.Context())).want(t, http.StatusOK)
	if ct := r.HTTPResponse.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
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

// The Go client generated from the document speaks to the gateway: it logs
// in, reads who it is, creates a user and reads the errors it is answered.
func TestGeneratedClient(t *testing.T) {
	g := newEnv(t).start(nil)
	ctx := t.Context()
	anon := g.anon(t)
	login, err := anon.AuthLoginWithResponse(ctx, apiclient.LoginRequest{Username: rootName, Password: rootKey})
	if err != nil || login.JSON200 == nil {
		t.Fatalf("login: %v %v %s", err, login.StatusCode(), login.Body)
	}
	if login.JSON200.User.Role != apiclient.SuperAdmin {
		t.Errorf("login: role %q", login.JSON200.User.Role)
	}
	c := g.anon(t)
	c.token = login.JSON200.AccessToken
	me, err := c.MeWithResponse(ctx)
	if err != nil || me.JSON200 == nil || me.JSON200.User.Username != rootName {
		t.Fatalf("me: %v %s", err, me.Body)
	}
	role := apiclient.Admin
	made, err := c.UserCreateWithResponse(ctx, apiclient.UserCreateRequest{Username: "ann", Role: &role})
	if err != nil || made.JSON201 == nil || made.JSON201.MasterKey == "" || made.JSON201.User.Role != apiclient.Admin {
		t.Fatalf("user create: %v %s", err, made.Body)
	}
	again, err := c.UserCreateWithResponse(ctx, apiclient.UserCreateRequest{Username: "ann"})
	if err != nil || again.JSON409 == nil || again.JSON409.Code != apiclient.ErrorCodeConflict {
		t.Fatalf("user create again: %v %d %s", err, again.StatusCode(), again.Body)
	}
	runs, err := c.RunListWithResponse(ctx, &apiclient.RunListParams{})
	if err != nil || runs.JSON200 == nil || len(*runs.JSON200) != 0 {
		t.Fatalf("run list: %v %s", err, runs.Body)
	}
	gone, err := anon.MeWithResponse(ctx)
	if err != nil || gone.JSON401 == nil || gone.JSON401.Code != apiclient.ErrorCodeUnauthorized {
		t.Fatalf("me without a token: %v %d %s", err, gone.StatusCode(), gone.Body)
	}
}
