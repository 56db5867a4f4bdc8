//go:build unix

package logstore

import "syscall"

// notDir is the error when a path element is a regular file.
var notDir error = syscall.ENOTDIR
