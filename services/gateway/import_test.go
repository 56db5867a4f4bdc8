package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	apiclient "github.com/testum/testum/libs/api/client"
)

type importResult struct {
	Created int `json:"created"`
	Items   []struct {
		Name       string `json:"name"`
		Result     string `json:"result"`
		Reason     string `json:"reason"`
		PlatformID int64  `json:"platform_id"`
	} `json:"items"`
}

// TestImportKeepsSecretsOutOfLabels: Ansible variables become labels only
// when asked for, never one that looks secret; labels are validated as on
// create; ansible_password becomes the platform's (encrypted) password.
func TestImportKeepsSecretsOutOfLabels(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.start(nil)
	seen := &syncBuffer{}
	c := g.client(t, seen)
	c.login(rootName, rootKey)
	ini := `[web]
web1 ansible_host=127.0.0.1 ansible_user=deploy ansible_password=host-own-pw-4711 db_password=label-leak-0815 role=frontend
web2 ansible_host=127.0.0.2 ansible_user=deploy role=frontend
web3 ansible_host=127.0.0.3 ansible_user=deploy role="two words"
`
	// Asking for a secret-looking variable refuses the import.
	for _, name := range []string{"db_password", "API_TOKEN", "ssh_key", "vault_secret"} {
		r := c.do("POST", "/api/platforms/import", map[string]any{"content": ini, "password": "shared-pw-1234",
			"labels_from_vars": []string{"role", name}})
		if r.Status != http.StatusBadRequest || errCode(t, r) != "secret_label" {
			t.Fatalf("labels_from_vars %s: %d %s", name, r.Status, r.Body)
		}
	}
	if r := c.do("POST", "/api/platforms/import", map[string]any{"content": ini, "password": "shared-pw-1234",
		"labels": map[string]string{"bad key": "x"}}); r.Status != http.StatusBadRequest {
		t.Fatalf("an invalid request label: %d %s", r.Status, r.Body)
	}

	var res importResult
	c.must(http.StatusOK, "POST", "/api/platforms/import", map[string]any{"content": ini, "password": "shared-pw-1234",
		"labels_from_vars": []string{"role"}}).decode(t, &res)
	if res.Created != 2 {
		t.Fatalf("import: %+v", res)
	}
	results := map[string]string{}
	for _, it := range res.Items {
		results[it.Name] = it.Result + ": " + it.Reason
	}
	if !strings.HasPrefix(results["web3"], "rejected: label role=") {
		t.Fatalf("an invalid label value: %q", results["web3"])
	}
	var ps []apiclient.Platform
	c.must(http.StatusOK, "GET", "/api/platforms/?name=web", nil).decode(t, &ps)
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
	ctx := context.Background()
	for name, want := range map[string]string{"web1": "host-own-pw-4711", "web2": "shared-pw-1234"} {
		p := byName[name]
		if p.AuthMethod != "password" || p.CredentialId == nil {
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
	c.must(http.StatusOK, "POST", "/api/platforms/import", map[string]any{"content": strings.ReplaceAll(ini, "web", "app")}).decode(t, &res)
	if res.Created != 1 {
		t.Fatalf("import without a shared secret: %+v", res)
	}
}
