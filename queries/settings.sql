-- name: SettingGet :one
SELECT value FROM settings WHERE name = @name;

-- name: SettingPut :exec
INSERT INTO settings (name, value) VALUES (@name, @value)
ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = now();

-- name: SettingPutIfAbsent :execrows
INSERT INTO settings (name, value) VALUES (@name, @value) ON CONFLICT (name) DO NOTHING;
