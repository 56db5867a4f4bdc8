-- name: SessionCreate :one
-- The session ends lifetime after it opens, by the clock that judges it.
INSERT INTO sessions (id, user_id, token_hash, created_at, last_activity, expires_at, ip, user_agent)
SELECT @id, @user_id, @token_hash, t.now, t.now, t.now + @lifetime::interval, @ip, @user_agent
FROM (SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS now) t
RETURNING expires_at;

-- name: SessionTouch :one
-- Checks a session and records activity in one statement: it answers only
-- for an active, unexpired session whose token matches, and returns its user.
UPDATE sessions s SET last_activity = t.now
FROM users u, (SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS now) t
WHERE s.id = @id AND s.token_hash = @token_hash AND s.active
  AND s.expires_at > t.now AND s.last_activity > t.now - @idle::interval AND u.id = s.user_id
RETURNING s.id, s.user_id, s.created_at, s.expires_at, u.username, u.role;

-- name: SessionCheck :one
-- Like SessionTouch without recording activity (an open WebSocket).
SELECT s.id, s.user_id, u.username, u.role
FROM sessions s JOIN users u ON u.id = s.user_id,
     (SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS now) t
WHERE s.id = @id AND s.active AND s.expires_at > t.now AND s.last_activity > t.now - @idle::interval;

-- name: SessionEnd :execrows
UPDATE sessions SET active = false, ended_at = coalesce(sqlc.narg('now')::timestamptz, now()), end_reason = @reason
WHERE id = @id AND active;

-- name: SessionsEndForUser :many
UPDATE sessions SET active = false, ended_at = coalesce(sqlc.narg('now')::timestamptz, now()), end_reason = @reason
WHERE user_id = @user_id AND active RETURNING id;

-- name: SessionsExpire :many
-- The cleanup job: ends every session past its idle or absolute limit.
UPDATE sessions s SET active = false, ended_at = t.now,
    end_reason = CASE WHEN s.expires_at <= t.now THEN 'expired' ELSE 'idle' END
FROM (SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS now) t
WHERE s.active AND (s.expires_at <= t.now OR s.last_activity <= t.now - @idle::interval)
RETURNING s.id;

-- name: SessionList :many
-- A page of sessions, most recently active first, with the number of all
-- that match.
SELECT s.id, s.user_id, u.username, u.role,
       (s.active AND s.expires_at > t.now AND s.last_activity > t.now - @idle::interval)::boolean AS active,
       s.created_at, s.last_activity, s.expires_at, s.ended_at, s.end_reason, s.ip, s.user_agent,
       count(*) OVER () AS total
FROM sessions s JOIN users u ON u.id = s.user_id,
     (SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS now) t
WHERE (NOT @active_only::boolean OR (s.active AND s.expires_at > t.now AND s.last_activity > t.now - @idle::interval))
ORDER BY s.last_activity DESC LIMIT @lim OFFSET @off;

-- name: SessionGet :one
SELECT s.id, s.user_id, u.username, u.role, s.active FROM sessions s JOIN users u ON u.id = s.user_id
WHERE s.id = @id;
