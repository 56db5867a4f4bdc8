-- +goose Up
-- How many SSH dials a host's connection took: more than one when the host
-- reset or closed a handshake before authentication and the executor dialed
-- again. NULL when no dial was made (a kept connection, or none needed).
ALTER TABLE run_hosts ADD COLUMN connect_attempts integer;

-- +goose Down
ALTER TABLE run_hosts DROP COLUMN connect_attempts;
