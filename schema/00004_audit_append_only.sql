-- +goose Up
-- The audit log is append-only in the database itself, not only in the API:
-- UPDATE, DELETE and TRUNCATE of audit_log fail for every statement that
-- reaches PostgreSQL, whatever code sent it. audit_log has no foreign key, so
-- no cascade or SET NULL ever rewrites a row: deleting a user keeps its
-- entries, which name the actor by its copied name (actor) and old id.
-- There is no retention: nothing in testum deletes audit entries. (The
-- table's owner can still drop these triggers; that is outside testum.)

-- +goose StatementBegin
CREATE FUNCTION audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- +goose Down
DROP TRIGGER audit_log_no_truncate ON audit_log;
DROP TRIGGER audit_log_append_only ON audit_log;
DROP FUNCTION audit_log_refuse_change();
