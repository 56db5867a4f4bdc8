-- +goose Up
-- The env values of a run marked secret, sealed like credentials (AES-GCM,
-- bound to the run): one JSON object of name → value per run. The run's
-- spec lists only their names, so nothing readable leaves this table.
CREATE TABLE run_secret_env (
    run_id  uuid PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    env     bytea NOT NULL,
    key_id  text NOT NULL
);

-- +goose Down
DROP TABLE run_secret_env;
