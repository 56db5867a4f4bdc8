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
SELECT sqlc.embed(platforms), count(*) OVER () AS total FROM platforms
ORDER BY id
LIMIT @lim OFFSET @off;

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

-- name: PlatformSearch :many
-- Lists platforms filtered by a label selector (labels @> selector), a name
-- substring and a state, with the number of all that match.
SELECT sqlc.embed(platforms), count(*) OVER () AS total FROM platforms
WHERE labels @> @selector::jsonb
  AND (@name::text = '' OR name ILIKE '%' || @name || '%')
  AND (@state::text = '' OR state = @state)
ORDER BY name
LIMIT @lim OFFSET @off;

-- name: PlatformUpdate :one
UPDATE platforms SET name = @name, host = @host, port = @port, username = @username, auth_method = @auth_method,
    credential_id = @credential_id, labels = @labels, jump_platform_id = @jump_platform_id,
    host_key_policy = @host_key_policy, updated_at = now()
WHERE id = @id
RETURNING *;

-- name: PlatformInActiveRun :one
SELECT EXISTS (
    SELECT 1 FROM run_hosts h JOIN runs r ON r.id = h.run_id
    WHERE h.platform_id = @id AND r.state IN ('queued', 'running')
) AS busy;

-- name: PlatformJumpedThrough :one
SELECT count(*) FROM platforms WHERE jump_platform_id = @id;

-- name: PlatformDelete :execrows
DELETE FROM platforms WHERE id = @id;

-- name: PlatformAcceptHostKey :execrows
-- An administrator accepts the key the host now offers: it becomes the
-- pinned key, but only if it is still the one they saw.
UPDATE platforms
SET host_key = offered_host_key, host_key_fingerprint = offered_host_key_fingerprint,
    offered_host_key = NULL, offered_host_key_fingerprint = NULL, offered_at = NULL,
    state = 'unknown', state_detail = '', updated_at = now()
WHERE id = @id AND offered_host_key_fingerprint = @fingerprint;

-- name: PlatformForgetHostKey :exec
UPDATE platforms
SET host_key = NULL, host_key_fingerprint = NULL, offered_host_key = NULL,
    offered_host_key_fingerprint = NULL, offered_at = NULL, updated_at = now()
WHERE id = @id;

-- name: PlatformHostKeys :one
SELECT host_key, host_key_fingerprint, offered_host_key, offered_host_key_fingerprint, offered_at
FROM platforms WHERE id = @id;

-- name: PlatformNames :many
SELECT id, name FROM platforms ORDER BY name;

-- name: RunPlatforms :many
-- The platforms a run's hosts log in to, with every jump host of their
-- chains, in one query (UNION stops at a loop).
WITH RECURSIVE chain(id) AS (
    SELECT platform_id FROM run_hosts WHERE run_id = @run_id AND platform_id IS NOT NULL
    UNION
    SELECT p.jump_platform_id FROM platforms p JOIN chain ON p.id = chain.id
    WHERE p.jump_platform_id IS NOT NULL
)
SELECT platforms.* FROM platforms WHERE id IN (SELECT id FROM chain) ORDER BY id;
