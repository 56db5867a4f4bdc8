-- +goose Up
-- Users, their server-side sessions and failed logins (seed 000 User +
-- seed 004 Admin, AdminSession, admin_actions).

CREATE TABLE users (
    id             bigserial PRIMARY KEY,
    username       text NOT NULL,
    role           text NOT NULL CHECK (role IN ('admin', 'extended_admin', 'super_admin')),
    key_hash       text NOT NULL,              -- bcrypt of the master key
    created_by     bigint,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    key_changed_at timestamptz NOT NULL DEFAULT now(),
    last_login_at  timestamptz
);
CREATE UNIQUE INDEX users_username_idx ON users (lower(username));

-- A session is what a token names. The token itself is never stored: only
-- its session id (the JWT "sid") and the hash of its random id ("jti").
CREATE TABLE sessions (
    id            uuid PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash    bytea NOT NULL,
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL,
    last_activity timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,        -- absolute end
    ended_at      timestamptz,
    end_reason    text NOT NULL DEFAULT '',
    ip            text NOT NULL DEFAULT '',
    user_agent    text NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user_idx ON sessions (user_id) WHERE active;
CREATE INDEX sessions_active_idx ON sessions (last_activity) WHERE active;

-- Failed logins, for limits per client address and per username that hold
-- across every gateway.
CREATE TABLE login_failures (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL,
    ip       text NOT NULL,
    username text NOT NULL
);
CREATE INDEX login_failures_ip_idx ON login_failures (ip, at);
CREATE INDEX login_failures_user_idx ON login_failures (lower(username), at);

-- +goose Down
DROP TABLE login_failures;
DROP TABLE sessions;
DROP TABLE users;
