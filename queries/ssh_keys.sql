-- name: SSHKeyCreate :one
INSERT INTO ssh_keys (name, public_key, fingerprint, created_by) VALUES (@name, @public_key, @fingerprint, @created_by)
RETURNING *;

-- name: SSHKeyList :many
SELECT sqlc.embed(ssh_keys), count(*) OVER () AS total FROM ssh_keys ORDER BY name LIMIT @lim OFFSET @off;

-- name: SSHKeysByIDs :many
SELECT * FROM ssh_keys WHERE id = ANY(@ids::bigint[]) ORDER BY id;

-- name: SSHKeyDelete :one
DELETE FROM ssh_keys WHERE id = @id RETURNING *;
