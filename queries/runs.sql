-- name: RunCreate :one
INSERT INTO runs (id, kind, command, spec, targets, parallelism, timeout_seconds, host_count,
                  created_by, created_by_name, parent_run_id)
VALUES (@id, @kind, @command, @spec, @targets, @parallelism, @timeout_seconds, @host_count,
        @created_by, @created_by_name, @parent_run_id)
RETURNING *;

-- name: RunHostsInsert :copyfrom
INSERT INTO run_hosts (run_id, idx, platform_id, name, address) VALUES (@run_id, @idx, @platform_id, @name, @address);

-- name: RunGet :one
SELECT * FROM runs WHERE id = @id;

-- name: RunHostsList :many
SELECT * FROM run_hosts WHERE run_id = @run_id ORDER BY idx;

-- name: RunHostGet :one
SELECT * FROM run_hosts WHERE run_id = @run_id AND idx = @idx;

-- name: RunHostCounts :many
SELECT state, count(*)::int AS n FROM run_hosts WHERE run_id = @run_id GROUP BY state;

-- name: RunHostCountsMany :many
-- Counts per state for a page of runs, in one query.
SELECT run_id, state, count(*)::int AS n FROM run_hosts
WHERE run_id = ANY(@run_ids::uuid[]) GROUP BY run_id, state;

-- name: RunCoordinate :one
-- A coordinator takes a run if nobody holds it, it holds it already, or its
-- holder's executor stopped heartbeating.
UPDATE runs
SET coordinator_id = @executor_id::text,
    state = CASE WHEN state = 'queued' THEN 'running' ELSE state END,
    started_at = coalesce(started_at, now())
WHERE runs.id = @id
  AND state IN ('queued', 'running')
  AND (coordinator_id IS NULL OR coordinator_id = @executor_id::text
       OR NOT EXISTS (SELECT 1 FROM executors e
                      WHERE e.id = runs.coordinator_id AND e.stopped_at IS NULL
                        AND e.heartbeat_at > @alive_after))
RETURNING *;

-- name: RunHostsNextToRelease :many
SELECT idx FROM run_hosts
WHERE run_id = @run_id AND state = 'queued' AND released_at IS NULL
ORDER BY idx
LIMIT @lim;

-- name: RunHostsRelease :many
UPDATE run_hosts SET released_at = now()
WHERE run_id = @run_id AND idx = ANY(@idxs::int[]) AND state = 'queued' AND released_at IS NULL
RETURNING idx, attempt;

-- name: RunHostsReleasedWaiting :many
-- Hosts whose task was published but never claimed: republished when a
-- coordinator resumes, in case the message did not survive.
SELECT idx, attempt FROM run_hosts
WHERE run_id = @run_id AND state = 'queued' AND released_at IS NOT NULL AND released_at < @before
ORDER BY idx;

-- name: RunHostClaim :one
-- The one door through which a command starts: only a queued host whose
-- attempt matches the task's can be taken, by exactly one executor.
UPDATE run_hosts
SET state = 'connecting', attempt = @attempt, executor_id = @executor_id::text, started_at = now(),
    finished_at = NULL, exit_code = NULL, signal = '', error = ''
WHERE run_id = @run_id AND idx = @idx AND state = 'queued' AND attempt + 1 = @attempt
RETURNING *;

-- name: RunHostSetRunning :execrows
-- The host's platform is recorded as reached in the same round trip: one
-- statement less on every host's way to its command.
WITH contact AS (
    UPDATE platforms SET state = 'reachable', state_detail = '', last_contact_at = now()
    WHERE id = @platform_id
)
UPDATE run_hosts SET state = 'running'
WHERE run_id = @run_id AND idx = @idx AND attempt = @attempt AND executor_id = @executor_id::text AND state = 'connecting';

-- name: RunHostFinish :one
UPDATE run_hosts
SET state = @state, exit_code = @exit_code, signal = @signal, error = @error,
    output_bytes = @output_bytes, truncated = @truncated, output_digest = @output_digest,
    log_key = @log_key, finished_at = now()
WHERE run_id = @run_id AND idx = @idx AND attempt = @attempt AND executor_id = @executor_id::text
  AND state IN ('connecting', 'running')
RETURNING *;

-- name: RunHostsEndQueued :many
-- Hosts that never started end in the given state (skipped, canceled).
UPDATE run_hosts SET state = @state, finished_at = now()
WHERE run_id = @run_id AND state = 'queued'
RETURNING idx, name;

-- name: RunFinish :one
UPDATE runs SET state = @state, error = @error, finished_at = now()
WHERE id = @id AND state IN ('queued', 'running')
RETURNING *;

-- name: RunsActiveOrphaned :many
-- Unfinished runs nobody alive coordinates: the reaper republishes them.
SELECT runs.id FROM runs
WHERE state IN ('queued', 'running') AND created_at < @created_before
  AND (coordinator_id IS NULL
       OR NOT EXISTS (SELECT 1 FROM executors e
                      WHERE e.id = runs.coordinator_id AND e.stopped_at IS NULL
                        AND e.heartbeat_at > @alive_after))
ORDER BY created_at
LIMIT 100;

-- name: RunProgress :one
-- What the coordinator decides from: how many hosts wait, are in flight,
-- failed and finished.
SELECT
    count(*)::int AS total,
    count(*) FILTER (WHERE state = 'queued' AND released_at IS NULL)::int AS pending,
    count(*) FILTER (WHERE released_at IS NOT NULL AND state IN ('queued', 'connecting', 'running'))::int AS in_flight,
    count(*) FILTER (WHERE state IN ('failed', 'timeout', 'unreachable', 'auth_failed', 'hostkey_rejected', 'lost'))::int AS failures,
    count(*) FILTER (WHERE state NOT IN ('queued', 'connecting', 'running'))::int AS finished,
    count(*) FILTER (WHERE state = 'ok')::int AS ok
FROM run_hosts WHERE run_id = @run_id;

-- name: RunRequestCancel :one
UPDATE runs SET cancel_requested = true WHERE id = @id RETURNING *;

-- name: RunAbort :exec
-- No further host of the run starts; the run will end aborted.
UPDATE runs SET abort_reason = @reason WHERE id = @id AND abort_reason = '';

-- name: RunCoordinatorRelease :exec
UPDATE runs SET coordinator_id = NULL WHERE id = @id AND coordinator_id = @executor_id::text;

-- name: RunHostEndUnstarted :execrows
-- A host whose task could not be delivered ends without having started.
UPDATE run_hosts SET state = @state, error = @error, finished_at = now()
WHERE run_id = @run_id AND idx = @idx AND state = 'queued';

-- name: RunSearch :many
SELECT * FROM runs r
WHERE (@state::text = '' OR r.state = @state)
  AND (@user_name::text = '' OR r.created_by_name = @user_name)
  AND (@q::text = '' OR r.command ILIKE '%' || @q || '%')
  AND (sqlc.narg('since')::timestamptz IS NULL OR r.created_at >= sqlc.narg('since'))
  AND (sqlc.narg('until')::timestamptz IS NULL OR r.created_at < sqlc.narg('until'))
  AND (sqlc.narg('platform_id')::bigint IS NULL
       OR EXISTS (SELECT 1 FROM run_hosts h WHERE h.run_id = r.id AND h.platform_id = sqlc.narg('platform_id')))
  AND (@selector::jsonb = '{}'::jsonb
       OR EXISTS (SELECT 1 FROM run_hosts h JOIN platforms p ON p.id = h.platform_id
                  WHERE h.run_id = r.id AND p.labels @> @selector::jsonb))
ORDER BY r.created_at DESC, r.id
LIMIT @lim OFFSET @off;

-- name: RunSearchCount :one
SELECT count(*) FROM runs r
WHERE (@state::text = '' OR r.state = @state)
  AND (@user_name::text = '' OR r.created_by_name = @user_name)
  AND (@q::text = '' OR r.command ILIKE '%' || @q || '%')
  AND (sqlc.narg('since')::timestamptz IS NULL OR r.created_at >= sqlc.narg('since'))
  AND (sqlc.narg('until')::timestamptz IS NULL OR r.created_at < sqlc.narg('until'))
  AND (sqlc.narg('platform_id')::bigint IS NULL
       OR EXISTS (SELECT 1 FROM run_hosts h WHERE h.run_id = r.id AND h.platform_id = sqlc.narg('platform_id')))
  AND (@selector::jsonb = '{}'::jsonb
       OR EXISTS (SELECT 1 FROM run_hosts h JOIN platforms p ON p.id = h.platform_id
                  WHERE h.run_id = r.id AND p.labels @> @selector::jsonb));
