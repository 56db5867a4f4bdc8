-- name: RunHostsInsert :copyfrom
INSERT INTO run_hosts (run_id, idx, platform_id, name, address) VALUES (@run_id, @idx, @platform_id, @name, @address);

-- name: RunHostsList :many
SELECT * FROM run_hosts WHERE run_id = @run_id ORDER BY idx;

-- name: RunHostGet :one
SELECT * FROM run_hosts WHERE run_id = @run_id AND idx = @idx;

-- name: RunHostCountsMany :many
-- Counts per state for a page of runs, in one query.
SELECT run_id, state, count(*)::int AS n FROM run_hosts
WHERE run_id = ANY(@run_ids::uuid[]) GROUP BY run_id, state;

-- name: RunHostsNextToRelease :many
SELECT idx FROM run_hosts
WHERE run_id = @run_id AND state = 'queued' AND released_at IS NULL
ORDER BY idx
LIMIT @lim;

-- name: RunHostsRelease :many
-- Only the run's coordinator releases its hosts (so do the coordinator's
-- other statements below: an executor that lost the run to a takeover
-- changes nothing; a takeover committed while the statement runs is
-- ordered after it by the hosts' row locks).
UPDATE run_hosts SET released_at = now()
WHERE run_id = @run_id AND idx = ANY(@idxs::int[]) AND state = 'queued' AND released_at IS NULL
  AND EXISTS (SELECT 1 FROM runs r WHERE r.id = @run_id AND r.coordinator_id = @executor_id::text)
RETURNING idx, attempt;

-- name: RunHostsReleasedWaiting :many
-- Hosts whose task was published more than @age ago but never claimed:
-- republished when a coordinator resumes, in case the message did not
-- survive.
SELECT idx, attempt FROM run_hosts
WHERE run_id = @run_id AND state = 'queued' AND released_at IS NOT NULL
  AND released_at < now() - @age::interval
  AND EXISTS (SELECT 1 FROM runs r WHERE r.id = @run_id AND r.coordinator_id = @executor_id::text)
ORDER BY idx;

-- name: RunHostClaim :one
-- The one door through which a command starts: only a queued host whose
-- attempt matches the task's can be taken, by exactly one executor.
UPDATE run_hosts
SET state = 'connecting', attempt = @attempt, executor_id = @executor_id::text, started_at = now(),
    finished_at = NULL, exit_code = NULL, signal = '', error = '', connect_attempts = NULL
WHERE run_id = @run_id AND idx = @idx AND state = 'queued' AND attempt + 1 = @attempt
RETURNING *;

-- name: RunHostsSetRunning :many
-- Claimed hosts of one executor move to running, several in one statement,
-- each only if it is still this executor's attempt and connecting. The
-- hosts' platforms are recorded as reached in the same round trip (they
-- were reached, whether or not the host is still ours), their rows locked
-- in id order first: two executors marking hosts of the same platforms
-- at once wait for each other instead of deadlocking.
WITH locked AS MATERIALIZED (
    SELECT id FROM platforms WHERE id = ANY(@platform_ids::bigint[]) ORDER BY id FOR UPDATE
), contact AS (
    UPDATE platforms SET state = 'reachable', state_detail = '', last_contact_at = now()
    FROM locked WHERE platforms.id = locked.id
)
UPDATE run_hosts SET state = 'running'
FROM (SELECT unnest(@run_ids::uuid[]) AS run_id, unnest(@idxs::int[]) AS idx, unnest(@attempts::int[]) AS attempt) AS r
WHERE run_hosts.run_id = r.run_id AND run_hosts.idx = r.idx AND run_hosts.attempt = r.attempt
  AND run_hosts.executor_id = @executor_id::text AND run_hosts.state = 'connecting'
RETURNING run_hosts.run_id, run_hosts.idx, run_hosts.attempt;

-- name: RunHostFinish :one
UPDATE run_hosts
SET state = @state, exit_code = @exit_code, signal = @signal, error = @error,
    output_bytes = @output_bytes, truncated = @truncated, output_digest = @output_digest,
    log_key = @log_key, connect_attempts = sqlc.narg('connect_attempts'), finished_at = now()
WHERE run_id = @run_id AND idx = @idx AND attempt = @attempt AND executor_id = @executor_id::text
  AND state IN ('connecting', 'running')
RETURNING *;

-- name: RunHostsEndQueued :many
-- Hosts that never started end in the given state (skipped, canceled);
-- attempt 0 means the host was never claimed, so it has no transcript.
UPDATE run_hosts SET state = @state, finished_at = now()
WHERE run_id = @run_id AND state = 'queued'
  AND EXISTS (SELECT 1 FROM runs r WHERE r.id = @run_id AND r.coordinator_id = @executor_id::text)
RETURNING idx, name, attempt;

-- name: RunWithProgress :one
-- What the coordinator decides from, in one round trip (it looks again at
-- every host's end): the run, and how many of its hosts wait, are in
-- flight, failed and finished.
SELECT sqlc.embed(runs), p.total, p.pending, p.in_flight, p.failures, p.finished, p.ok
FROM runs, LATERAL (
    SELECT
        count(*)::int AS total,
        count(*) FILTER (WHERE h.state = 'queued' AND h.released_at IS NULL)::int AS pending,
        count(*) FILTER (WHERE h.released_at IS NOT NULL AND h.state IN ('queued', 'connecting', 'running'))::int AS in_flight,
        count(*) FILTER (WHERE h.state IN ('failed', 'timeout', 'unreachable', 'auth_failed', 'hostkey_rejected', 'lost'))::int AS failures,
        count(*) FILTER (WHERE h.state NOT IN ('queued', 'connecting', 'running'))::int AS finished,
        count(*) FILTER (WHERE h.state = 'ok')::int AS ok
    FROM run_hosts h WHERE h.run_id = runs.id
) AS p
WHERE runs.id = @id;

-- name: RunHostEndUnstarted :execrows
-- A host whose task could not be delivered ends without having started.
UPDATE run_hosts SET state = @state, error = @error, finished_at = now()
WHERE run_id = @run_id AND idx = @idx AND state = 'queued';

-- name: RunHostsLoseExecutor :many
-- The running hosts of a dead executor end lost: the command may or may
-- not have finished, so it is never silently run again.
UPDATE run_hosts SET state = 'lost', finished_at = now(),
    error = 'executor ' || executor_id || ' stopped responding while the host was ' || state
WHERE executor_id = @executor_id AND state = 'running'
RETURNING run_id, idx, name, attempt;

-- name: RunHostsRequeueUnstarted :many
-- The connecting hosts of a dead executor never started their command (it
-- starts only once RunHostsSetRunning moved the row to running, which this
-- update forbids from now on): they go back to the queue, to be released
-- again as their next attempt.
UPDATE run_hosts SET state = 'queued', released_at = NULL, executor_id = NULL, started_at = NULL,
    error = 'executor ' || executor_id || ' stopped responding before the command started; queued again'
WHERE executor_id = @executor_id AND state = 'connecting'
RETURNING run_id, idx, name, attempt;

-- name: RunHostRequeue :execrows
-- retry_lost: a lost host goes back to the queue for another attempt.
UPDATE run_hosts SET state = 'queued', released_at = NULL, executor_id = NULL, finished_at = NULL
WHERE run_id = @run_id AND idx = @idx AND state = 'lost' AND attempt = @attempt;

-- name: RunHostsClaim :many
-- RunHostClaim for several tasks in one statement: each row is taken only
-- if it is queued and its attempt matches, exactly as one by one.
UPDATE run_hosts
SET state = 'connecting', attempt = c.attempt, executor_id = @executor_id::text, started_at = now(),
    finished_at = NULL, exit_code = NULL, signal = '', error = '', connect_attempts = NULL
FROM (SELECT unnest(@run_ids::uuid[]) AS run_id, unnest(@idxs::int[]) AS idx, unnest(@attempts::int[]) AS attempt) AS c
WHERE run_hosts.run_id = c.run_id AND run_hosts.idx = c.idx
  AND run_hosts.state = 'queued' AND run_hosts.attempt + 1 = c.attempt
RETURNING run_hosts.*;

-- name: RunHostsFinish :many
-- RunHostFinish for several hosts of one executor in one statement, each
-- with its own result and RunHostFinish's conditions. An exit code counts
-- only where has_exit_code is true; a connect_attempts of 0 is none.
UPDATE run_hosts
SET state = f.state, exit_code = CASE WHEN f.has_exit_code THEN f.exit_code END, signal = f.signal,
    error = f.error, output_bytes = f.output_bytes, truncated = f.truncated, output_digest = f.output_digest,
    log_key = f.log_key, connect_attempts = NULLIF(f.connect_attempts, 0), finished_at = now()
FROM (SELECT unnest(@run_ids::uuid[]) AS run_id, unnest(@idxs::int[]) AS idx, unnest(@attempts::int[]) AS attempt,
             unnest(@states::text[]) AS state, unnest(@exit_codes::int[]) AS exit_code,
             unnest(@has_exit_codes::bool[]) AS has_exit_code, unnest(@signals::text[]) AS signal,
             unnest(@errors::text[]) AS error, unnest(@output_bytes::bigint[]) AS output_bytes,
             unnest(@truncated::bool[]) AS truncated, unnest(@output_digests::text[]) AS output_digest,
             unnest(@log_keys::text[]) AS log_key, unnest(@connect_attempts::int[]) AS connect_attempts) AS f
WHERE run_hosts.run_id = f.run_id AND run_hosts.idx = f.idx AND run_hosts.attempt = f.attempt
  AND run_hosts.executor_id = @executor_id::text AND run_hosts.state IN ('connecting', 'running')
RETURNING run_hosts.*;
