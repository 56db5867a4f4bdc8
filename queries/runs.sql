-- name: RunCreate :one
INSERT INTO runs (id, kind, command, spec, targets, parallelism, timeout_seconds, host_count,
                  created_by, created_by_name, parent_run_id)
VALUES (@id, @kind, @command, @spec, @targets, @parallelism, @timeout_seconds, @host_count,
        @created_by, @created_by_name, @parent_run_id)
RETURNING *;

-- name: RunGet :one
SELECT * FROM runs WHERE id = @id;

-- name: RunCoordinate :one
-- A coordinator takes a run if nobody holds it, it holds it already, or its
-- holder's executor has not heartbeat within @dead_after (database clock),
-- silence counting only since this server started (as ExecutorsDeadHolding).
UPDATE runs
SET coordinator_id = @executor_id::text,
    state = CASE WHEN state = 'queued' THEN 'running' ELSE state END,
    started_at = coalesce(started_at, now())
WHERE runs.id = @id
  AND state IN ('queued', 'running')
  AND (coordinator_id IS NULL OR coordinator_id = @executor_id::text
       OR NOT EXISTS (SELECT 1 FROM executors e
                      WHERE e.id = runs.coordinator_id AND e.stopped_at IS NULL
                        AND greatest(e.heartbeat_at, coalesce(sqlc.narg('heard_since')::timestamptz, pg_postmaster_start_time())) > now() - @dead_after::interval))
RETURNING *;

-- name: RunFinish :one
-- Only the run's coordinator finishes it: one that lost the run to a
-- takeover (a concurrent takeover is ordered by the row lock) changes nothing.
UPDATE runs SET state = @state, error = @error, finished_at = now()
WHERE id = @id AND state IN ('queued', 'running') AND coordinator_id = @executor_id::text
RETURNING *;

-- name: RunsActiveOrphaned :many
-- Unfinished runs that nobody alive coordinates: never taken or handed back
-- (no coordinator), or held by an executor that stopped or has not
-- heartbeat within @dead_after (database clock; silence counting only since
-- this server started, as in ExecutorsDeadHolding). settled: the run has been
-- without a live coordinator for longer than @settle (counted from its
-- creation when it never had one, else from when its coordinator's
-- liveness expired), so any message of it left in the stream should have
-- been delivered and taken by then.
SELECT runs.id,
       (CASE WHEN runs.coordinator_id IS NULL THEN runs.created_at
             ELSE coalesce(least(e.stopped_at, greatest(e.heartbeat_at, coalesce(sqlc.narg('heard_since')::timestamptz, pg_postmaster_start_time())) + @dead_after::interval),
                           '-infinity'::timestamptz)
        END < now() - @settle::interval)::bool AS settled
FROM runs LEFT JOIN executors e ON e.id = runs.coordinator_id
WHERE runs.state IN ('queued', 'running')
  AND (runs.coordinator_id IS NULL OR e.id IS NULL OR e.stopped_at IS NOT NULL
       OR greatest(e.heartbeat_at, coalesce(sqlc.narg('heard_since')::timestamptz, pg_postmaster_start_time())) <= now() - @dead_after::interval)
ORDER BY runs.created_at
LIMIT 100;

-- name: RunRequestCancel :one
UPDATE runs SET cancel_requested = true WHERE id = @id RETURNING *;

-- name: RunAbort :execrows
-- No further host of the run starts; the run will end aborted. Only its
-- coordinator records that.
UPDATE runs SET abort_reason = @reason
WHERE id = @id AND abort_reason = '' AND coordinator_id = @executor_id::text;

-- name: RunCoordinatorRelease :exec
UPDATE runs SET coordinator_id = NULL WHERE id = @id AND coordinator_id = @executor_id::text;

-- name: RunSearch :many
-- A page of the history, newest first, with the number of all that match.
-- before_id, when given, starts the page after that run (keyset paging);
-- the total still counts every run the filter matches.
SELECT sqlc.embed(r), m.total FROM runs r
JOIN (SELECT x.id, count(*) OVER () AS total FROM runs x
      WHERE (@state::text = '' OR x.state = @state)
        AND (@user_name::text = '' OR x.created_by_name = @user_name)
        AND (@q::text = '' OR x.command ILIKE '%' || @q || '%')
        AND (sqlc.narg('since')::timestamptz IS NULL OR x.created_at >= sqlc.narg('since'))
        AND (sqlc.narg('until')::timestamptz IS NULL OR x.created_at < sqlc.narg('until'))
        AND (sqlc.narg('platform_id')::bigint IS NULL
             OR EXISTS (SELECT 1 FROM run_hosts h WHERE h.run_id = x.id AND h.platform_id = sqlc.narg('platform_id')))
        AND (@selector::jsonb = '{}'::jsonb
             OR EXISTS (SELECT 1 FROM run_hosts h JOIN platforms p ON p.id = h.platform_id
                        WHERE h.run_id = x.id AND p.labels @> @selector::jsonb))) m ON m.id = r.id
WHERE sqlc.narg('before_id')::uuid IS NULL
   OR EXISTS (SELECT 1 FROM runs c WHERE c.id = sqlc.narg('before_id')
              AND (r.created_at < c.created_at OR (r.created_at = c.created_at AND r.id > c.id)))
ORDER BY r.created_at DESC, r.id
LIMIT @lim OFFSET @off;
