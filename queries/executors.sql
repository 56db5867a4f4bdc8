-- name: ExecutorRegister :exec
INSERT INTO executors (id, hostname, pid, slots) VALUES (@id, @hostname, @pid, @slots)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), stopped_at = NULL;

-- name: ExecutorHeartbeat :execrows
UPDATE executors SET heartbeat_at = now() WHERE id = @id AND stopped_at IS NULL;

-- name: ExecutorStop :exec
UPDATE executors SET stopped_at = now() WHERE id = @id;

-- name: ExecutorsOnline :many
SELECT * FROM executors WHERE stopped_at IS NULL AND heartbeat_at > @alive_after ORDER BY id;

-- name: ExecutorsDeadHolding :many
-- Executors that stopped heartbeating (or stopped) while hosts are still
-- theirs.
SELECT DISTINCT rh.executor_id::text AS executor_id FROM run_hosts rh
LEFT JOIN executors e ON e.id = rh.executor_id
WHERE rh.state IN ('connecting', 'running')
  AND (e.id IS NULL OR e.stopped_at IS NOT NULL OR e.heartbeat_at <= @alive_after);

-- name: RunHostsLoseExecutor :many
-- The hosts of a dead executor end lost: the command may or may not have
-- finished, so it is never silently run again.
UPDATE run_hosts SET state = 'lost', finished_at = now(),
    error = 'executor ' || executor_id || ' stopped responding while the host was ' || state
WHERE executor_id = @executor_id AND state IN ('connecting', 'running')
RETURNING run_id, idx, name, attempt;

-- name: RunHostRequeue :execrows
-- retry_lost: a lost host goes back to the queue for another attempt.
UPDATE run_hosts SET state = 'queued', released_at = NULL, executor_id = NULL, finished_at = NULL
WHERE run_id = @run_id AND idx = @idx AND state = 'lost' AND attempt = @attempt;
