-- name: AuditInsert :one
INSERT INTO audit_log (actor_id, actor, action, target, details, ip, outcome)
VALUES (@actor_id, @actor, @action, @target, @details, @ip, @outcome)
RETURNING id;

-- name: AuditList :many
-- A page of the log, newest first, with the number of all entries that match.
SELECT sqlc.embed(audit_log), count(*) OVER () AS total FROM audit_log
WHERE (@actor::text = '' OR actor = @actor)
  AND (@action::text = '' OR action = @action OR action LIKE @action || '.%')
  AND (@target::text = '' OR target = @target)
  AND (sqlc.narg('since')::timestamptz IS NULL OR at >= sqlc.narg('since'))
  AND (sqlc.narg('until')::timestamptz IS NULL OR at < sqlc.narg('until'))
ORDER BY at DESC, id DESC LIMIT @lim OFFSET @off;
