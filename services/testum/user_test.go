package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/secrets"
	"github.com/testum/testum/libs/testenv"
)

// TestUserCommands: the operator at the machine's console creates, lists,
// resets and deletes users; keys printed once log in through the API.
func TestUserCommands(t *testing.T) {
	t.Parallel()
	s := startServe(t, nil)
	env := map[string]string{"DATABASE_URL": s.DB}
	user := func(args ...string) (string, error) {
		var out, errw bytes.Buffer
		err := run(context.Background(), append([]string{"user"}, args...), func(k string) string { return env[k] },
			strings.NewReader(""), &out, &errw)
		return out.String() + errw.String(), err
	}
	out, err := user("create", "ops", "extended_admin")
	if err != nil {
		t.Fatalf("create: %v %s", err, out)
	}
	key := lastField(out)
	s.loginAs(t, "ops", key, http.StatusOK)
	if out, err = user("list"); err != nil || !strings.Contains(out, "ops") || !strings.Contains(out, "extended_admin") {
		t.Fatalf("list: %v %s", err, out)
	}
	if out, err = user("reset", "ops"); err != nil {
		t.Fatalf("reset: %v %s", err, out)
	}
	s.loginAs(t, "ops", key, http.StatusUnauthorized) // the old key no longer logs in
	s.loginAs(t, "ops", lastField(out), http.StatusOK)
	if _, err := user("create", "ops"); err == nil {
		t.Fatal("a duplicate user was created")
	}
	if out, err := user("delete", testAdmin); err == nil || !strings.Contains(out+err.Error(), "last super_admin") {
		t.Fatalf("deleting the last super_admin: %v %s", err, out)
	}
	if out, err = user("delete", "ops"); err != nil {
		t.Fatalf("delete: %v %s", err, out)
	}
	if _, err := user("create", "bad", "root"); err == nil {
		t.Fatal("an unknown role was accepted")
	}
}

func lastField(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}

// TestFirstStartPrintsGeneratedKeyOnce: with no ADMIN_PASSWORD the first
// start creates the super_admin with a generated key, printed once.
func TestFirstStartPrintsGeneratedKeyOnce(t *testing.T) {
	t.Parallel()
	fernet, err := secrets.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATABASE_URL": testenv.Postgres(t), "ADMIN_PASSWORD": "", "ADMIN_USERNAME": "boss",
		"FERNET_KEY": fernet, "SECRET_KEY": "first-start-secret-key-0123456789abcdef"}
	s := startServe(t, env)
	printed := s.out.String()
	if !strings.Contains(printed, "master key") {
		t.Fatalf("no key printed: %q", printed)
	}
	key := strings.Fields(printed[strings.Index(printed, "master key"):])[2]
	s.loginAs(t, "boss", key, http.StatusOK)
	if strings.Contains(s.logs.String(), key) {
		t.Fatal("the generated key reached the log")
	}
	again := startServe(t, env)
	if strings.Contains(again.out.String(), "master key") || strings.Contains(again.out.String(), key) {
		t.Fatalf("the second start printed a key: %q", again.out.String())
	}
}

// loginAs logs in as username with key, wanting status; the token is not
// kept: later calls to s still speak as the test super_admin.
func (s *server) loginAs(t *testing.T, username, key string, want int) {
	t.Helper()
	resp, err := s.api.AuthLoginWithResponse(context.Background(), apiclient.LoginRequest{Username: username, Password: key})
	checkStatus(t, "login as "+username, err, resp.StatusCode(), want, resp.Body)
	if want == http.StatusOK && (resp.JSON200 == nil || resp.JSON200.AccessToken == "") {
		t.Fatalf("login as %s: no token: %s", username, resp.Body)
	}
}
