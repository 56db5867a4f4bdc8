-- name: AuditInsert :one
INSERT INTO audit_log (actor_id, actor, action, target, details, ip, outcome)
VALUES (@actor_id, @actor, @action, @target, @details, @ip, @outcome)
RETURNING id;

-- name: AuditList :many
-- A page of the log, newest first, with the number of all entries that match.
-- before_id, when given, starts the page after that entry (keyset paging);
-- the total still counts every entry the filter matches.
SELECT sqlc.embed(audit_log), m.total FROM audit_log
JOIN (SELECT x.id, count(*) OVER () AS total FROM audit_log x
      WHERE (@actor::text = '' OR x.actor = @actor)
        AND (@action::text = '' OR x.action = @action OR x.action LIKE @action || '.%')
        AND (@target::text = '' OR x.target = @target)
        AND (sqlc.narg('since')::timestamptz IS NULL OR x.at >= sqlc.narg('since'))
        AND (sqlc.narg('until')::timestamptz IS NULL OR x.at < sqlc.narg('until'))) m ON m.id = audit_log.id
WHERE sqlc.narg('before_id')::bigint IS NULL
   OR (audit_log.at, audit_log.id) < (SELECT c.at, c.id FROM audit_log c WHERE c.id = sqlc.narg('before_id'))
ORDER BY audit_log.at DESC, audit_log.id DESC LIMIT @lim OFFSET @off;
