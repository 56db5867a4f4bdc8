package main

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/fernet/fernet-go"

	"github.com/testum/testum/libs/secrets"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testenv"
)

// TestStartResealsFernetCredentials: a credential as the Python testum wrote
// it (a Fernet token under FERNET_KEY) is re-sealed in the row-bound format
// by the first start, audited once with its counts; a second start does
// nothing.
func TestStartResealsFernetCredentials(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	key, err := secrets.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := secrets.ParseKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	dbURL := testenv.Postgres(t)
	if err := store.Migrate(ctx, dbURL, nil); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, store.Config{URL: dbURL, Sealer: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fk, err := fernet.DecodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	const password = "python-era-password"
	tok, err := fernet.EncryptAndSign([]byte(password), fk)
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	if err := st.Pool().QueryRow(ctx, `INSERT INTO credentials (name, kind, secret, key_id)
		VALUES ('legacy', 'password', $1, $2) RETURNING id`, tok, secrets.LegacyFernetKeyID).Scan(&id); err != nil {
		t.Fatal(err)
	}
	// A token under a key that is not in FERNET_KEY stays as it is and does
	// not fail the start.
	otherKey, _ := secrets.GenerateKey()
	fk2, _ := fernet.DecodeKey(otherKey)
	foreign, err := fernet.EncryptAndSign([]byte("unknown-key-password"), fk2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, `INSERT INTO credentials (name, kind, secret, key_id)
		VALUES ('foreign', 'password', $1, $2)`, foreign, secrets.LegacyFernetKeyID); err != nil {
		t.Fatal(err)
	}

	upgrades := func() []map[string]any {
		rows, err := st.Pool().Query(ctx, "SELECT details FROM audit_log WHERE action = 'secrets.upgrade'")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []map[string]any
		for rows.Next() {
			var raw []byte
			if err := rows.Scan(&raw); err != nil {
				t.Fatal(err)
			}
			var d map[string]any
			_ = json.Unmarshal(raw, &d)
			out = append(out, d)
		}
		return out
	}
	env := map[string]string{"DATABASE_URL": dbURL, "FERNET_KEY": key}
	for i, name := range []string{"first start", "second start"} {
		t.Run(name, func(t *testing.T) {
			startServe(t, env)
			var secret []byte
			var keyID string
			if err := st.Pool().QueryRow(ctx, "SELECT secret, key_id FROM credentials WHERE id = $1", id).Scan(&secret, &keyID); err != nil {
				t.Fatal(err)
			}
			if secrets.IsLegacy(secret) || keyID != kr.CurrentKeyID() {
				t.Fatalf("credential still in the Fernet format (key id %q)", keyID)
			}
			got, err := st.CredentialOpen(ctx, id)
			if err != nil || string(got.Secret) != password {
				t.Fatalf("re-sealed credential opens to %q, %v", got.Secret, err)
			}
			if _, err := kr.Open(secret, []byte("credentials/999/secret")); err == nil {
				t.Fatal("the re-sealed secret is not bound to its row")
			}
			u := upgrades()
			var kept []byte
			if err := st.Pool().QueryRow(ctx, "SELECT secret FROM credentials WHERE name = 'foreign'").Scan(&kept); err != nil || string(kept) != string(foreign) {
				t.Fatalf("the unreadable token was changed (%v)", err)
			}
			if len(u) != 1 || u[0]["resealed"] != float64(1) || u[0]["unreadable"] != float64(1) {
				t.Fatalf("after start %d: secrets.upgrade audit entries %v, want one with resealed 1", i+1, u)
			}
		})
	}
}
