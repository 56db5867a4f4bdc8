-- name: LoginAttemptAdd :one
-- A login attempt is recorded before its key is checked, and committed on
-- its own: concurrent attempts then see each other when they count.
INSERT INTO login_failures (at, ip, username)
VALUES (coalesce(sqlc.narg('now')::timestamptz, now()), @ip, @username) RETURNING id;

-- name: LoginAttemptRefund :exec
-- An attempt that did not fail (the key was right, or it was refused
-- before its key was checked) is no failure.
DELETE FROM login_failures WHERE id = @id;

-- name: LoginAttemptCounts :one
-- Failures within @within: for this username from this address, from this
-- address for any username, for this username from any address; the oldest
-- of each (to tell when the window frees up) and the newest of the pair
-- other than the attempt itself (to space retries out; the window's start
-- when there is none); and the time the window ends, which those are to be
-- compared with.
WITH t AS (SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS now)
SELECT
    count(*) FILTER (WHERE ip = @ip AND lower(username) = lower(@username))::bigint AS by_pair,
    coalesce(min(at) FILTER (WHERE ip = @ip AND lower(username) = lower(@username)), (SELECT now FROM t))::timestamptz AS oldest_pair,
    coalesce(max(at) FILTER (WHERE ip = @ip AND lower(username) = lower(@username) AND id <> @self),
             (SELECT now FROM t) - @within::interval)::timestamptz AS newest_pair,
    count(*) FILTER (WHERE ip = @ip)::bigint AS by_ip,
    coalesce(min(at) FILTER (WHERE ip = @ip), (SELECT now FROM t))::timestamptz AS oldest_ip,
    count(*) FILTER (WHERE lower(username) = lower(@username))::bigint AS by_user,
    (SELECT now FROM t)::timestamptz AS at
FROM login_failures
WHERE at > (SELECT now FROM t) - @within::interval AND (ip = @ip OR lower(username) = lower(@username));

-- name: LoginFailuresPrune :exec
-- Forgets failures older than @age.
DELETE FROM login_failures WHERE at < coalesce(sqlc.narg('now')::timestamptz, now()) - @age::interval;
