-- name: RunSecretEnvCreate :exec
INSERT INTO run_secret_env (run_id, env, key_id) VALUES (@run_id, @env, @key_id);

-- name: RunSecretEnvGet :one
SELECT env FROM run_secret_env WHERE run_id = @run_id;

-- name: RunSecretEnvAll :many
SELECT run_id, env FROM run_secret_env ORDER BY run_id;

-- name: RunSecretEnvReseal :exec
UPDATE run_secret_env SET env = @env, key_id = @key_id WHERE run_id = @run_id;
