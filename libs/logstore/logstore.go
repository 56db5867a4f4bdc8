// Package logstore archives the full output of each run host.
//
// Three backends implement Store: Disk (files under a directory, the default of
// `testum serve`), S3 (any S3-compatible server such as MinIO, for
// production) and NATS (a JetStream object store on the NATS the roles
// share). Open picks Disk or S3 from a Config; NewNATS takes a JetStream
// connection.
//
// Keys are slash-separated relative paths such as "runs/12/3.log"; ValidateKey
// describes the rules, which every backend enforces identically.
package logstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Store is an object store for run logs. Implementations are safe for
// concurrent use.
type Store interface {
	// Put stores the content of r under key, replacing any existing object.
	// size is the exact length of r, or -1 if unknown. The object becomes
	// visible atomically: readers see the old content or the new, never a
	// partial one.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Get opens the object. It returns an error wrapping ErrNotFound if the
	// key does not exist. The caller must close the reader.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat describes the object, or returns an error wrapping ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes the object. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List returns every object whose key starts with prefix (a plain string
	// prefix, not necessarily ending in "/"), sorted by key.
	List(ctx context.Context, prefix string) ([]Info, error)
}

// Info describes a stored object.
type Info struct {
	Key      string
	Size     int64
	Modified time.Time
}

// ErrNotFound is wrapped by errors for keys that do not exist.
var ErrNotFound = errors.New("logstore: not found")

// ErrInvalidKey is wrapped by errors for keys or prefixes that ValidateKey
// rejects.
var ErrInvalidKey = errors.New("logstore: invalid key")

// MaxKeyLen is the longest key accepted, in bytes (the S3 limit).
const MaxKeyLen = 1024

// tmpPrefix starts the names of Disk's temporary files; keys may not contain
// a path element starting with it.
const tmpPrefix = ".tmp-"

// ValidateKey reports whether key is acceptable to every Store: a non-empty,
// valid UTF-8, slash-separated relative path of at most MaxKeyLen bytes, with
// no empty, "." or ".." element, no leading or trailing slash, no backslash,
// no control character, and no element starting with ".tmp-" (reserved for
// temporary files). The error wraps ErrInvalidKey.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if err := validatePath(key); err != nil {
		return err
	}
	if strings.HasSuffix(key, "/") {
		return fmt.Errorf("%w %s: trailing slash", ErrInvalidKey, strconv.Quote(key))
	}
	return nil
}

// validatePrefix accepts "" and any prefix of a valid key.
func validatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	return validatePath(prefix)
}

func validatePath(s string) error {
	q := strconv.Quote(s)
	switch {
	case len(s) > MaxKeyLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidKey, MaxKeyLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w %s: not valid UTF-8", ErrInvalidKey, q)
	case strings.HasPrefix(s, "/") || filepath.IsAbs(s):
		return fmt.Errorf("%w %s: absolute path", ErrInvalidKey, q)
	case strings.Contains(s, `\`):
		return fmt.Errorf("%w %s: backslash", ErrInvalidKey, q)
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("%w %s: control character", ErrInvalidKey, q)
	}
	elems := strings.Split(s, "/")
	for i, e := range elems {
		last := i == len(elems)-1
		switch {
		case e == "" && !last:
			return fmt.Errorf("%w %s: empty path element", ErrInvalidKey, q)
		case e == "." || e == "..":
			return fmt.Errorf("%w %s: %q path element", ErrInvalidKey, q, e)
		case strings.HasPrefix(e, tmpPrefix):
			return fmt.Errorf("%w %s: path element starts with reserved %q", ErrInvalidKey, q, tmpPrefix)
		}
	}
	return nil
}
