package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/testum/testum/libs/secrets"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// upgradeLegacySecrets re-seals the Fernet tokens a database of the Python
// testum holds into the row-bound AES-GCM format, at every start of a
// serve, gateway or executor, after the migrations. It runs once across the
// cluster (an advisory lock: a replica starting meanwhile skips it, the one
// holding the lock does the work) and is audited with its counts whenever
// it re-sealed something; with nothing left in the old format it writes
// nothing. Envelopes of an older key are left to "testum secrets rotate".
// A token that no key of FERNET_KEY opens is left as it is and reported:
// it fails where it is used, not the whole start.
func upgradeLegacySecrets(ctx context.Context, st *store.Store, kr *secrets.Keyring, log *slog.Logger) error {
	var r store.Rotation
	unreadable := 0
	legacy := func(ct []byte) bool {
		if !secrets.IsLegacy(ct) {
			return false
		}
		if _, err := kr.Open(ct, nil); err != nil { // Fernet has no associated data
			unreadable++
			return false
		}
		return true
	}
	_, err := st.Once(ctx, "secrets.upgrade-legacy", func(tx *store.Tx) error {
		var err error
		if r, err = tx.CredentialsRotate(ctx, legacy); err != nil {
			return err
		}
		if r.Resealed == 0 {
			return nil
		}
		return tx.Audit(ctx, testum.AuditEntry{Actor: "system", Action: "secrets.upgrade", Target: "credentials",
			Outcome: testum.AuditOK, Details: map[string]any{"checked": r.Checked, "resealed": r.Resealed,
				"unreadable": unreadable, "from": "fernet", "key_id": kr.CurrentKeyID()}})
	})
	if err != nil {
		return fmt.Errorf("re-sealing Fernet credentials: %w", err)
	}
	if r.Resealed > 0 {
		log.Info("Fernet credentials re-sealed in the current format", "resealed", r.Resealed, "checked", r.Checked)
	}
	if unreadable > 0 {
		log.Warn("Fernet credentials that no key of FERNET_KEY opens were left as they are", "count", unreadable)
	}
	return nil
}
