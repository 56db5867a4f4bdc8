//go:build !unix

package logstore

import "errors"

// notDir never matches on this platform.
var notDir = errors.New("logstore: not a directory")
