-- +goose Up
-- The foundation: managed hosts and their credentials, runs and their hosts,
-- executors, and the audit log. Later migrations add users and sessions.

-- A credential is a password or a private key, always encrypted by
-- libs/secrets with its own row and column as associated data.
CREATE TABLE credentials (
    id            bigserial PRIMARY KEY,
    name          text UNIQUE,                 -- NULL for a platform's inline secret
    kind          text NOT NULL CHECK (kind IN ('password', 'private_key')),
    secret        bytea NOT NULL,              -- ciphertext of the password or the PEM key
    passphrase    bytea,                       -- ciphertext of the key's passphrase, if any
    key_id        text NOT NULL,               -- id of the key that sealed it (rotation)
    public_key    text,                        -- for private keys: the matching public key
    fingerprint   text,
    owner_platform bigint,                     -- set for inline secrets: deleted with the platform
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE platforms (
    id                 bigserial PRIMARY KEY,
    name               text NOT NULL UNIQUE,
    host               text NOT NULL,
    port               integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    username           text NOT NULL,
    auth_method        text NOT NULL CHECK (auth_method IN ('password', 'private_key')),
    credential_id      bigint REFERENCES credentials (id) ON DELETE RESTRICT,
    labels             jsonb NOT NULL DEFAULT '{}'::jsonb,
    jump_platform_id   bigint REFERENCES platforms (id) ON DELETE RESTRICT,
    host_key_policy    text CHECK (host_key_policy IN ('auto_add', 'strict')), -- NULL: the global policy
    host_key           text,        -- pinned key, authorized_keys format
    host_key_fingerprint text,
    offered_host_key   text,        -- a different key the host presented, awaiting acceptance
    offered_host_key_fingerprint text,
    offered_at         timestamptz,
    state              text NOT NULL DEFAULT 'unknown', -- outcome of the last contact
    state_detail       text NOT NULL DEFAULT '',
    last_contact_at    timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX platforms_labels_idx ON platforms USING gin (labels);

ALTER TABLE credentials ADD CONSTRAINT credentials_owner_fk
    FOREIGN KEY (owner_platform) REFERENCES platforms (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED;

-- A run is one thing executed on a set of hosts. spec holds what runs and
-- how (command or script, timeouts, fan-out controls) as the API received it,
-- normalised; the columns repeat what queries filter or the coordinator reads.
CREATE TABLE runs (
    id              uuid PRIMARY KEY,
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'canceled', 'aborted')),
    kind            text NOT NULL DEFAULT 'command',
    command         text NOT NULL,             -- the command, or the script's display line
    spec            jsonb NOT NULL,
    targets         jsonb NOT NULL,            -- the targets as requested
    parallelism     integer NOT NULL CHECK (parallelism > 0),
    timeout_seconds integer NOT NULL CHECK (timeout_seconds > 0),
    host_count      integer NOT NULL,
    created_by      bigint,
    created_by_name text NOT NULL DEFAULT '',
    parent_run_id   uuid REFERENCES runs (id) ON DELETE SET NULL,
    coordinator_id  text,
    cancel_requested boolean NOT NULL DEFAULT false,
    abort_reason    text NOT NULL DEFAULT '',  -- why no further host starts (threshold, deadline)
    error           text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz
);
CREATE INDEX runs_created_idx ON runs (created_at DESC);
CREATE INDEX runs_active_idx ON runs (state) WHERE state IN ('queued', 'running');

-- One row per host of a run. idx is the host's position in the run and its
-- token in NATS subjects; the platform's name and address are copied so the
-- history stays readable after the platform changes or goes away.
CREATE TABLE run_hosts (
    run_id        uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    idx           integer NOT NULL,
    platform_id   bigint REFERENCES platforms (id) ON DELETE SET NULL,
    name          text NOT NULL,
    address       text NOT NULL,
    state         text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'connecting', 'running', 'ok', 'failed', 'timeout', 'unreachable',
                                   'auth_failed', 'hostkey_rejected', 'canceled', 'lost', 'skipped')),
    released_at   timestamptz,                 -- when the coordinator published its task
    attempt       integer NOT NULL DEFAULT 0,  -- how many times it was started
    executor_id   text,
    exit_code     integer,
    signal        text NOT NULL DEFAULT '',
    error         text NOT NULL DEFAULT '',
    output_bytes  bigint NOT NULL DEFAULT 0,
    truncated     boolean NOT NULL DEFAULT false,
    output_digest text NOT NULL DEFAULT '',
    log_key       text NOT NULL DEFAULT '',
    started_at    timestamptz,
    finished_at   timestamptz,
    PRIMARY KEY (run_id, idx)
);
CREATE INDEX run_hosts_executor_idx ON run_hosts (executor_id) WHERE state IN ('connecting', 'running');
CREATE INDEX run_hosts_platform_idx ON run_hosts (platform_id);

-- Executors announce themselves and heartbeat; the reaper declares the
-- hosts of a silent one lost.
CREATE TABLE executors (
    id           text PRIMARY KEY,
    hostname     text NOT NULL,
    pid          integer NOT NULL,
    slots        integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz
);

-- The audit log: append-only, no secrets, actor copied by name so it
-- outlives the user.
CREATE TABLE audit_log (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor_id  bigint,
    actor     text NOT NULL DEFAULT '',
    action    text NOT NULL,
    target    text NOT NULL DEFAULT '',
    details   jsonb NOT NULL DEFAULT '{}'::jsonb,
    ip        text NOT NULL DEFAULT '',
    outcome   text NOT NULL DEFAULT 'ok'
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, at DESC);
CREATE INDEX audit_log_action_idx ON audit_log (action, at DESC);

-- Small named values: the secrets canary, the installation identity.
CREATE TABLE settings (
    name       text PRIMARY KEY,
    value      bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE settings;
DROP TABLE audit_log;
DROP TABLE executors;
DROP TABLE run_hosts;
DROP TABLE runs;
ALTER TABLE credentials DROP CONSTRAINT credentials_owner_fk;
DROP TABLE platforms;
DROP TABLE credentials;
