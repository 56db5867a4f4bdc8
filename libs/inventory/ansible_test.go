package inventory

import (
	"maps"
	"strings"
	"testing"
)

// TestAnsibleVarsAreNotLabels: only the variables testum understands are
// used; the others are kept aside (never labels by themselves), and the
// login password is the entry's password, never anywhere else.
func TestAnsibleVarsAreNotLabels(t *testing.T) {
	ini := `[web]
web1 ansible_host=127.0.0.1 ansible_user=deploy ansible_password=hunter2 db_password=s3cret role=frontend
web2 ansible_ssh_pass=old-style api_token=t0k

[web:vars]
dc=east
`
	yml := `all:
  children:
    web:
      vars:
        dc: east
      hosts:
        web1:
          ansible_host: 127.0.0.1
          ansible_user: deploy
          ansible_password: hunter2
          db_password: s3cret
          role: frontend
        web2:
          ansible_ssh_pass: old-style
          api_token: t0k
`
	for _, tc := range []struct{ format, content string }{{FormatAnsibleINI, ini}, {FormatAnsibleYAML, yml}} {
		res, err := Parse(tc.format, strings.NewReader(tc.content))
		if err != nil || len(res.Entries) != 2 || len(res.Problems) != 0 {
			t.Fatalf("%s: %+v, %v", tc.format, res, err)
		}
		w1, w2 := res.Entries[0], res.Entries[1]
		if want := map[string]string{"web": "true"}; !maps.Equal(w1.Labels, want) || !maps.Equal(w2.Labels, want) {
			t.Errorf("%s: labels %v, %v; want only the group", tc.format, w1.Labels, w2.Labels)
		}
		if w1.Host != "127.0.0.1" || w1.User != "deploy" || w1.Password != "hunter2" || w2.Password != "old-style" {
			t.Errorf("%s: entries %+v %+v", tc.format, w1, w2)
		}
		if want := map[string]string{"db_password": "s3cret", "role": "frontend", "dc": "east"}; !maps.Equal(w1.Vars, want) {
			t.Errorf("%s: web1 vars %v, want %v", tc.format, w1.Vars, want)
		}
		for _, e := range res.Entries {
			for k := range e.Vars {
				if strings.HasPrefix(k, "ansible_") {
					t.Errorf("%s: %s kept %s among vars", tc.format, e.Name, k)
				}
			}
		}
	}
}

func TestLooksSecret(t *testing.T) {
	for name, want := range map[string]bool{
		"db_password": true, "DB_PASS": true, "vault_Secret": true, "api_token": true, "ssh_key": true,
		"apiKey": true, "passphrase": true, "role": false, "dc": false, "tier": false, "env": false,
	} {
		if got := LooksSecret(name); got != want {
			t.Errorf("LooksSecret(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestAnsiblePatternsHaveABoundedCost: repeating a large range costs one
// budget for the whole inventory, reported once.
func TestAnsiblePatternsHaveABoundedCost(t *testing.T) {
	ini := "[web]\n" + strings.Repeat("x[1:99999]\n", 1000)
	res, err := Parse(FormatAnsibleINI, strings.NewReader(ini))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Entries) != 99999 {
		t.Fatalf("%d entries, want 99999", len(res.Entries))
	}
	over := 0
	for _, p := range res.Problems {
		if strings.Contains(p.Reason, "names in all") {
			over++
		}
	}
	if over != 1 {
		t.Fatalf("%d budget problems, want 1 (of %d problems)", over, len(res.Problems))
	}
}
