-- +goose Up
-- Public SSH keys to deploy to platforms' authorized_keys.
CREATE TABLE ssh_keys (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    public_key  text NOT NULL,                 -- authorized_keys line: type base64 [comment]
    fingerprint text NOT NULL UNIQUE,          -- SHA256:…; a key is stored once
    created_by  text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE ssh_keys;
