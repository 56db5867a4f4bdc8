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

-- name: CredentialList :many
SELECT sqlc.embed(credentials), count(*) OVER () AS total
FROM credentials WHERE name IS NOT NULL ORDER BY name LIMIT @lim OFFSET @off;

-- name: CredentialDelete :execrows
DELETE FROM credentials WHERE id = @id AND name IS NOT NULL;

-- name: CredentialInUse :one
SELECT count(*) FROM platforms WHERE credential_id = @id;

-- name: CredentialDeleteOwned :exec
-- An inline secret goes with its platform.
DELETE FROM credentials WHERE id = @id AND owner_platform IS NOT DISTINCT FROM @owner_platform AND name IS NULL;

-- name: CredentialsAll :many
SELECT id, secret, passphrase, key_id FROM credentials ORDER BY id FOR UPDATE;

-- name: CredentialReseal :exec
UPDATE credentials SET secret = @secret, passphrase = @passphrase, key_id = @key_id, updated_at = now() WHERE id = @id;

-- name: CredentialByName :one
SELECT * FROM credentials WHERE name = @name;

-- name: CredentialsGetMany :many
SELECT * FROM credentials WHERE id = ANY(@ids::bigint[]) ORDER BY id;
