package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/testum/testum/libs/accounts"
	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

const userUsage = `Usage: testum user <command> [flags]

Manage users from the machine's console (as the operator who runs testum):

  testum user list
  testum user create NAME [ROLE]   ROLE: admin (default), extended_admin, super_admin
  testum user delete NAME
  testum user reset NAME           a new master key; the user's sessions end

New master keys are printed once. Every change is written to the audit log.
Database flags (--database-url, --data-dir) as for testum migrate.
`

// cmdUser manages users without the API: the way in when no super_admin
// can log in.
func cmdUser(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, userUsage)
		return errUsage
	}
	sub, rest := args[0], args[1:]
	var pos []string
	for len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		pos, rest = append(pos, rest[0]), rest[1:]
	}
	var cfg Config
	if err := cfg.load("user "+sub, rest, getenv, stderr, "db"); err != nil {
		return err
	}
	cfg.LogLevel = "warn"
	log, err := cfg.logger(stderr)
	if err != nil {
		return err
	}
	url, stop, err := databaseURL(ctx, &cfg, log)
	if err != nil {
		return err
	}
	defer stop()
	if err := store.Migrate(ctx, url, nil); err != nil {
		return err
	}
	st, err := store.Open(ctx, store.Config{URL: url, Logger: log})
	if err != nil {
		return err
	}
	defer st.Close()
	need := func(n int, what string) error {
		if len(pos) < n || len(pos) > n+1 {
			return fmt.Errorf("testum user %s: want %s", sub, what)
		}
		return nil
	}
	acc, err := accounts.New(accounts.Config{Logger: log}, accounts.Postgres(st))
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		users, _, err := st.UserList(ctx, 1000, 0)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tUSERNAME\tROLE\tLAST LOGIN")
		for _, u := range users {
			last := "never"
			if u.LastLoginAt != nil {
				last = u.LastLoginAt.UTC().Format("2006-01-02 15:04Z")
			}
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", u.ID, u.Username, u.Role, last)
		}
		return w.Flush()
	case "create":
		if err := need(1, "NAME [ROLE]"); err != nil {
			return err
		}
		role := auth.RoleAdmin
		if len(pos) == 2 {
			role = auth.Role(pos[1])
		}
		if !role.Valid() {
			return fmt.Errorf("role %q: want admin, extended_admin or super_admin", role)
		}
		u, key, err := acc.CreateUser(ctx, consoleActor, pos[0], role)
		if err != nil {
			return plainErr(err)
		}
		fmt.Fprintf(stdout, "created %s (%s); master key, shown once:\n\n    %s\n", u.Username, u.Role, key)
		return nil
	case "delete":
		if err := need(1, "NAME"); err != nil {
			return err
		}
		u, err := acc.DeleteUserNamed(ctx, consoleActor, pos[0])
		if err != nil {
			return plainErr(err)
		}
		fmt.Fprintf(stdout, "deleted %s\n", u.Username)
		return nil
	case "reset":
		if err := need(1, "NAME"); err != nil {
			return err
		}
		u, key, err := acc.ResetKeyNamed(ctx, consoleActor, pos[0])
		if err != nil {
			return plainErr(err)
		}
		fmt.Fprintf(stdout, "new master key for %s, shown once:\n\n    %s\n", u.Username, key)
		return nil
	}
	fmt.Fprint(stderr, userUsage)
	return fmt.Errorf("testum user: unknown command %q", sub)
}

// plainErr shows a testum error's message alone.
func plainErr(err error) error {
	var te *testum.Error
	if errors.As(err, &te) {
		return errors.New(te.Message)
	}
	return err
}

// consoleActor is the machine's console operator, as the audit log names it.
var consoleActor = auth.Actor{Username: "console"}
