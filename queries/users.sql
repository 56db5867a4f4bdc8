-- name: UserCreate :one
INSERT INTO users (username, role, key_hash, created_by, created_at, updated_at, key_changed_at)
VALUES (@username, @role, @key_hash, @created_by, @now, @now, @now)
RETURNING *;

-- name: UserGet :one
SELECT * FROM users WHERE id = @id;

-- name: UserByName :one
SELECT * FROM users WHERE lower(username) = lower(@username);

-- name: UserList :many
SELECT * FROM users ORDER BY username LIMIT @lim OFFSET @off;

-- name: UserCount :one
SELECT count(*) FROM users;

-- name: UserLockSuperAdmins :many
-- Locks every super_admin row, so that two concurrent demotions or
-- deletions cannot both see "another super_admin remains".
SELECT id FROM users WHERE role = 'super_admin' ORDER BY id FOR UPDATE;

-- name: UserDelete :execrows
DELETE FROM users WHERE id = @id;

-- name: UserSetRole :one
UPDATE users SET role = @role, updated_at = @now WHERE id = @id RETURNING *;

-- name: UserSetKey :execrows
UPDATE users SET key_hash = @key_hash, key_changed_at = @now, updated_at = @now WHERE id = @id;

-- name: UserTouchLogin :exec
UPDATE users SET last_login_at = @now::timestamptz WHERE id = @id;

-- name: SessionCreate :exec
INSERT INTO sessions (id, user_id, token_hash, created_at, last_activity, expires_at, ip, user_agent)
VALUES (@id, @user_id, @token_hash, @now, @now, @expires_at, @ip, @user_agent);

-- name: SessionTouch :one
-- Checks a session and records activity in one statement: it answers only
-- for an active, unexpired session whose token matches, and returns its user.
UPDATE sessions s SET last_activity = @now
FROM users u
WHERE s.id = @id AND s.token_hash = @token_hash AND s.active
  AND s.expires_at > @now AND s.last_activity > @idle_since AND u.id = s.user_id
RETURNING s.id, s.user_id, s.created_at, s.expires_at, u.username, u.role;

-- name: SessionCheck :one
-- Like SessionTouch without recording activity (an open WebSocket).
SELECT s.id, s.user_id, u.username, u.role FROM sessions s JOIN users u ON u.id = s.user_id
WHERE s.id = @id AND s.active AND s.expires_at > @now AND s.last_activity > @idle_since;

-- name: SessionEnd :execrows
UPDATE sessions SET active = false, ended_at = @now::timestamptz, end_reason = @reason WHERE id = @id AND active;

-- name: SessionsEndForUser :many
UPDATE sessions SET active = false, ended_at = @now::timestamptz, end_reason = @reason
WHERE user_id = @user_id AND active RETURNING id;

-- name: SessionsExpire :many
-- The cleanup job: ends every session past its idle or absolute limit.
UPDATE sessions SET active = false, ended_at = @now::timestamptz,
    end_reason = CASE WHEN expires_at <= @now THEN 'expired' ELSE 'idle' END
WHERE active AND (expires_at <= @now OR last_activity <= @idle_since) RETURNING id;

-- name: SessionList :many
SELECT s.id, s.user_id, u.username, u.role, s.active, s.created_at, s.last_activity, s.expires_at,
       s.ended_at, s.end_reason, s.ip, s.user_agent
FROM sessions s JOIN users u ON u.id = s.user_id
WHERE (NOT @active_only::boolean OR (s.active AND s.expires_at > @now AND s.last_activity > @idle_since))
ORDER BY s.last_activity DESC LIMIT @lim OFFSET @off;

-- name: SessionCount :one
SELECT count(*) FROM sessions s
WHERE (NOT @active_only::boolean OR (s.active AND s.expires_at > @now AND s.last_activity > @idle_since));

-- name: SessionGet :one
SELECT s.id, s.user_id, u.username, u.role, s.active FROM sessions s JOIN users u ON u.id = s.user_id
WHERE s.id = @id;

-- name: LoginAttemptAdd :one
-- A login attempt is recorded before its key is checked, and committed on
-- its own: concurrent attempts then see each other when they count.
INSERT INTO login_failures (at, ip, username) VALUES (@now, @ip, @username) RETURNING id;

-- name: LoginAttemptRefund :exec
-- An attempt that did not fail (the key was right, or it was refused
-- before its key was checked) is no failure.
DELETE FROM login_failures WHERE id = @id;

-- name: LoginAttemptCounts :one
-- Failures since a moment: for this username from this address, from this
-- address for any username, for this username from any address; the oldest
-- of each (to tell when the window frees up) and the newest of the pair
-- other than the attempt itself (to space retries out).
SELECT
    count(*) FILTER (WHERE ip = @ip AND lower(username) = lower(@username))::bigint AS by_pair,
    coalesce(min(at) FILTER (WHERE ip = @ip AND lower(username) = lower(@username)), @now)::timestamptz AS oldest_pair,
    coalesce(max(at) FILTER (WHERE ip = @ip AND lower(username) = lower(@username) AND id <> @self), @since)::timestamptz AS newest_pair,
    count(*) FILTER (WHERE ip = @ip)::bigint AS by_ip,
    coalesce(min(at) FILTER (WHERE ip = @ip), @now)::timestamptz AS oldest_ip,
    count(*) FILTER (WHERE lower(username) = lower(@username))::bigint AS by_user
FROM login_failures
WHERE at > @since AND (ip = @ip OR lower(username) = lower(@username));

-- name: LoginFailuresPrune :exec
DELETE FROM login_failures WHERE at < @before;
