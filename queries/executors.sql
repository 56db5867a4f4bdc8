-- name: ExecutorRegister :exec
INSERT INTO executors (id, hostname, pid, slots) VALUES (@id, @hostname, @pid, @slots)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), stopped_at = NULL;

-- name: ExecutorHeartbeat :execrows
UPDATE executors SET heartbeat_at = now() WHERE id = @id AND stopped_at IS NULL;

-- name: ExecutorStop :exec
UPDATE executors SET stopped_at = now() WHERE id = @id;

-- name: ExecutorsOnline :many
SELECT * FROM executors WHERE stopped_at IS NULL AND heartbeat_at > now() - @dead_after::interval ORDER BY id;

-- name: ExecutorsDeadHolding :many
-- Executors that have not heartbeat within @dead_after (or stopped) while
-- hosts are still theirs. Silence counts only while this server was up to
-- hear it (from pg_postmaster_start_time() on): an executor that could not
-- heartbeat because PostgreSQL was down or restarting is not dead.
SELECT DISTINCT rh.executor_id::text AS executor_id FROM run_hosts rh
LEFT JOIN executors e ON e.id = rh.executor_id
WHERE rh.state IN ('connecting', 'running')
  AND (e.id IS NULL OR e.stopped_at IS NOT NULL
       OR greatest(e.heartbeat_at, coalesce(sqlc.narg('heard_since')::timestamptz, pg_postmaster_start_time())) <= now() - @dead_after::interval);
