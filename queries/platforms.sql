-- name: PlatformCreate :one
INSERT INTO platforms (name, host, port, username, auth_method, credential_id, labels, jump_platform_id, host_key_policy)
VALUES (@name, @host, @port, @username, @auth_method, @credential_id, @labels, @jump_platform_id, @host_key_policy)
RETURNING *;

-- name: PlatformGet :one
SELECT * FROM platforms WHERE id = @id;

-- name: PlatformGetForUpdate :one
SELECT * FROM platforms WHERE id = @id FOR UPDATE;

-- name: PlatformsByIDs :many
SELECT * FROM platforms WHERE id = ANY(@ids::bigint[]) ORDER BY id;

-- name: PlatformList :many
SELECT * FROM platforms
ORDER BY id
LIMIT @lim OFFSET @off;

-- name: PlatformCount :one
SELECT count(*) FROM platforms;

-- name: PlatformPinHostKey :execrows
-- First contact under auto_add: pin the key only if none is pinned yet, so
-- two executors racing on first contact cannot both pin different keys.
UPDATE platforms
SET host_key = @host_key, host_key_fingerprint = @fingerprint, updated_at = now()
WHERE id = @id AND host_key IS NULL;

-- name: PlatformOfferHostKey :exec
UPDATE platforms
SET offered_host_key = @host_key, offered_host_key_fingerprint = @fingerprint, offered_at = now()
WHERE id = @id;

-- name: PlatformRecordContact :exec
UPDATE platforms
SET state = @state, state_detail = @detail, last_contact_at = now()
WHERE id = @id;
