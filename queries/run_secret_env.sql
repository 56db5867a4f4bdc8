-- name: RunSecretEnvCreate :exec
INSERT INTO run_secret_env (run_id, env, key_id) VALUES (@run_id, @env, @key_id);

-- name: RunSecretEnvGet :one
SELECT env FROM run_secret_env WHERE run_id = @run_id;
