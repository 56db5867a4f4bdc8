package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/testum/testum/libs/db"
)

// runSecretEnvAD binds a run's sealed environment to its row.
func runSecretEnvAD(id uuid.UUID) []byte { return []byte("run_secret_env/" + id.String() + "/env") }

// runSecretEnvCreate seals a run's secret env values apart from its spec.
func (s *Store) runSecretEnvCreate(ctx context.Context, id uuid.UUID, env map[string]string) error {
	if len(env) == 0 {
		return nil
	}
	if s.sealer == nil {
		return fmt.Errorf("run secret env: no encryption key configured")
	}
	plain, err := json.Marshal(env)
	if err != nil {
		return err
	}
	sealed, err := s.sealer.Seal(plain, runSecretEnvAD(id))
	if err != nil {
		return fmt.Errorf("seal run secret env: %w", err)
	}
	err = s.q.RunSecretEnvCreate(ctx, db.RunSecretEnvCreateParams{RunID: id, Env: sealed, KeyID: s.sealer.CurrentKeyID()})
	return wrap(err, "run secret env")
}

// RunSecretEnv returns the decrypted secret env values of a run (empty when
// it has none), for the executor and for a rerun only.
func (s *Store) RunSecretEnv(ctx context.Context, id uuid.UUID) (map[string]string, error) {
	sealed, err := s.q.RunSecretEnvGet(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, wrap(err, "run secret env")
	}
	if s.sealer == nil {
		return nil, fmt.Errorf("run secret env: no encryption key configured")
	}
	plain, err := s.sealer.Open(sealed, runSecretEnvAD(id))
	if err != nil {
		return nil, fmt.Errorf("run %s secret env: %w", id, err)
	}
	env := map[string]string{}
	if err := json.Unmarshal(plain, &env); err != nil {
		return nil, fmt.Errorf("run %s secret env: %w", id, err)
	}
	return env, nil
}

// RunSecretEnvRotate re-encrypts, with the newest key, every run's secret
// env sealed with another key, like CredentialsRotate does for credentials.
func (s *Store) RunSecretEnvRotate(ctx context.Context, needs func(ct []byte) bool) (Rotation, error) {
	var out Rotation
	err := s.atomically(ctx, func(tx *Store) error {
		var err error
		out, err = tx.runSecretEnvRotate(ctx, needs)
		return err
	})
	return out, err
}

func (s *Store) runSecretEnvRotate(ctx context.Context, needs func(ct []byte) bool) (Rotation, error) {
	var r Rotation
	rows, err := s.q.RunSecretEnvAll(ctx)
	if err != nil {
		return r, wrap(err, "run secret env")
	}
	for _, row := range rows {
		r.Checked++
		if !needs(row.Env) {
			continue
		}
		plain, err := s.sealer.Open(row.Env, runSecretEnvAD(row.RunID))
		if err != nil {
			return r, fmt.Errorf("run %s secret env: %w", row.RunID, err)
		}
		sealed, err := s.sealer.Seal(plain, runSecretEnvAD(row.RunID))
		if err != nil {
			return r, err
		}
		if err := s.q.RunSecretEnvReseal(ctx, db.RunSecretEnvResealParams{RunID: row.RunID, Env: sealed,
			KeyID: s.sealer.CurrentKeyID()}); err != nil {
			return r, wrap(err, "run secret env")
		}
		r.Resealed++
	}
	return r, nil
}
