-- name: UserCreate :one
INSERT INTO users (username, role, key_hash, created_by, created_at, updated_at, key_changed_at)
SELECT @username, @role, @key_hash, @created_by, t.now, t.now, t.now
FROM (SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS now) t
RETURNING *;

-- name: UserGet :one
SELECT * FROM users WHERE id = @id;

-- name: UserByName :one
SELECT * FROM users WHERE lower(username) = lower(@username);

-- name: UserList :many
SELECT sqlc.embed(users), count(*) OVER () AS total
FROM users ORDER BY username LIMIT @lim OFFSET @off;

-- name: UserCount :one
SELECT count(*) FROM users;

-- name: UserLockSuperAdmins :many
-- Locks every super_admin row, so that two concurrent demotions or
-- deletions cannot both see "another super_admin remains".
SELECT id FROM users WHERE role = 'super_admin' ORDER BY id FOR UPDATE;

-- name: UserDelete :execrows
DELETE FROM users WHERE id = @id;

-- name: UserSetRole :one
UPDATE users SET role = @role, updated_at = coalesce(sqlc.narg('now')::timestamptz, now()) WHERE id = @id RETURNING *;

-- name: UserSetKey :execrows
UPDATE users SET key_hash = @key_hash, key_changed_at = coalesce(sqlc.narg('now')::timestamptz, now()),
    updated_at = coalesce(sqlc.narg('now')::timestamptz, now())
WHERE id = @id;

-- name: UserTouchLogin :exec
UPDATE users SET last_login_at = coalesce(sqlc.narg('now')::timestamptz, now()) WHERE id = @id;
