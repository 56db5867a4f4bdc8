-- name: CredentialNextID :one
-- Ids are taken before the insert because the id is part of the associated
-- data the secret is sealed with.
SELECT nextval(pg_get_serial_sequence('credentials', 'id'))::bigint AS id;

-- name: CredentialCreate :one
INSERT INTO credentials (id, name, kind, secret, passphrase, key_id, public_key, fingerprint, owner_platform)
VALUES (@id, @name, @kind, @secret, @passphrase, @key_id, @public_key, @fingerprint, @owner_platform)
RETURNING *;

-- name: CredentialGet :one
SELECT * FROM credentials WHERE id = @id;

-- name: CredentialSetOwner :exec
UPDATE credentials SET owner_platform = @owner_platform WHERE id = @id;
