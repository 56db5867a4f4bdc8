package main

import (
	"context"
	"fmt"
	"io"

	"github.com/testum/testum/libs/secrets"
	"github.com/testum/testum/libs/store"
)

const secretsUsage = `Usage: testum secrets <command>

  testum secrets generate   print a new key in the FERNET_KEY format
  testum secrets rotate     re-encrypt every stored credential with the newest key

To rotate: put a new key first in FERNET_KEY, keeping the old ones after it
(FERNET_KEY=new,old), restart testum, run "testum secrets rotate", then drop
the old key. Credentials written by the Python testum (Fernet tokens) are
rewritten in the current format on the way.
`

func cmdSecrets(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, secretsUsage)
		return errUsage
	}
	switch args[0] {
	case "generate":
		k, err := secrets.GenerateKey()
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, k)
		return nil
	case "rotate":
	default:
		fmt.Fprint(stderr, secretsUsage)
		return fmt.Errorf("testum secrets: unknown command %q", args[0])
	}
	var cfg Config
	if err := cfg.load("secrets rotate", args[1:], getenv, stderr, "db", "keys"); err != nil {
		return err
	}
	cfg.LogLevel = "warn"
	log, err := cfg.logger(stderr)
	if err != nil {
		return err
	}
	sys := &system{cfg: &cfg, log: log}
	if err := sys.loadFernetKey(false); err != nil {
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
	st, err := store.Open(ctx, store.Config{URL: url, Sealer: sys.keyring, Logger: log})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := checkSecretsCanary(ctx, st, sys.keyring); err != nil {
		return err
	}
	var r, re store.Rotation
	err = st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if r, err = tx.CredentialsRotate(ctx, sys.keyring.NeedsRotation); err != nil {
			return err
		}
		if re, err = tx.RunSecretEnvRotate(ctx, sys.keyring.NeedsRotation); err != nil {
			return err
		}
		return tx.Audit(ctx, consoleActor.Entry("secrets.rotate", "credentials", map[string]any{
			"checked": r.Checked, "resealed": r.Resealed, "key_id": sys.keyring.CurrentKeyID(),
			"run_secret_env_checked": re.Checked, "run_secret_env_resealed": re.Resealed}))
	})
	if err != nil {
		return err
	}
	sealed, err := sys.keyring.Seal([]byte("testum"), []byte("settings/"+canaryName))
	if err != nil {
		return err
	}
	if err := st.SettingPut(ctx, canaryName, sealed); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d credentials checked, %d re-encrypted with key %s\n", r.Checked, r.Resealed, sys.keyring.CurrentKeyID())
	if re.Checked > 0 {
		fmt.Fprintf(stdout, "%d runs' secret env checked, %d re-encrypted\n", re.Checked, re.Resealed)
	}
	return nil
}
