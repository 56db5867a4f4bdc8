package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/testenv"
)

// TestImportKeepsSecretsOutOfLabels: Ansible variables become labels only
// when asked for, never one that looks secret; labels are validated as on
// create; ansible_password becomes the platform's (encrypted) password.
func TestImportKeepsSecretsOutOfLabels(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	ctx := t.Context()
	seen := &testenv.LogBuffer{}
	c := g.anon(t)
	c.seen = seen
	c.login(rootName, rootKey)
	ini := `[web]
web1 ansible_host=127.0.0.1 ansible_user=deploy ansible_password=host-own-pw-4711 db_password=label-leak-0815 role=frontend
web2 ansible_host=127.0.0.2 ansible_user=deploy role=frontend
web3 ansible_host=127.0.0.3 ansible_user=deploy role="two words"
`
	// Asking for a secret-looking variable refuses the import.
	for _, name := range []string{"db_password", "API_TOKEN", "ssh_key", "vault_secret"} {
		r := got(c.PlatformImportWithResponse(ctx, apiclient.ImportRequest{Content: ini, Password: new("shared-pw-1234"),
			LabelsFromVars: &[]string{"role", name}})).reply(t)
		if r.Status != http.StatusBadRequest || r.code() != apiclient.ErrorCodeSecretLabel {
			t.Fatalf("labels_from_vars %s: %d %s", name, r.Status, r.Body)
		}
	}
	if r := got(c.PlatformImportWithResponse(ctx, apiclient.ImportRequest{Content: ini, Password: new("shared-pw-1234"),
		Labels: &apiclient.Labels{"bad key": "x"}})).reply(t); r.Status != http.StatusBadRequest {
		t.Fatalf("an invalid request label: %d %s", r.Status, r.Body)
	}

	res := got(c.PlatformImportWithResponse(ctx, apiclient.ImportRequest{Content: ini, Password: new("shared-pw-1234"),
		LabelsFromVars: &[]string{"role"}})).want(t, http.StatusOK)
	if res.JSON200.Created != 2 || res.JSON200.Items == nil {
		t.Fatalf("import: %s", res.Body)
	}
	results := map[string]string{}
	for _, it := range *res.JSON200.Items {
		results[it.Name] = string(it.Result) + ": "
		if it.Reason != nil {
			results[it.Name] += *it.Reason
		}
	}
	if !strings.HasPrefix(results["web3"], "rejected: label role=") {
		t.Fatalf("an invalid label value: %q", results["web3"])
	}
	ps := *got(c.PlatformSearchWithResponse(ctx, &apiclient.PlatformSearchParams{Name: new("web")})).want(t, http.StatusOK).JSON200
	if len(ps) != 2 {
		t.Fatalf("platforms: %+v", ps)
	}
	byName := map[string]apiclient.Platform{}
	for _, p := range ps {
		byName[p.Name] = p
		if want := map[string]string{"web": "true", "role": "frontend"}; len(p.Labels) != 2 ||
			p.Labels["web"] != want["web"] || p.Labels["role"] != want["role"] {
			t.Errorf("%s labels %v, want %v", p.Name, p.Labels, want)
		}
	}
	for name, want := range map[string]string{"web1": "host-own-pw-4711", "web2": "shared-pw-1234"} {
		p := byName[name]
		if p.AuthMethod != apiclient.Password || p.CredentialId == nil {
			t.Fatalf("%s: %+v", name, p)
		}
		sec, err := g.st.CredentialOpen(ctx, *p.CredentialId)
		if err != nil || string(sec.Secret) != want {
			t.Fatalf("%s opens to %q, %v; want %q", name, sec.Secret, err, want)
		}
	}
	if *byName["web1"].CredentialId == *byName["web2"].CredentialId {
		t.Fatal("the host's own password was shared")
	}
	for _, leak := range []string{"host-own-pw-4711", "label-leak-0815"} {
		if strings.Contains(seen.String(), leak) {
			t.Fatalf("%s reached an API response", leak)
		}
	}

	// Without a secret in the request, only entries with their own import.
	res = got(c.PlatformImportWithResponse(ctx, apiclient.ImportRequest{Content: strings.ReplaceAll(ini, "web", "app")})).want(t, http.StatusOK)
	if res.JSON200.Created != 1 {
		t.Fatalf("import without a shared secret: %s", res.Body)
	}
}
