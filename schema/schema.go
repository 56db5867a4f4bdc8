// Package schema embeds the numbered goose migrations that libs/store
// applies and that sqlc reads as the database schema.
package schema

import "embed"

// Migrations holds the *.sql files of this directory.
//
//go:embed *.sql
var Migrations embed.FS
