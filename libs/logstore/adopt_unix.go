//go:build unix

package logstore

import (
	"os"
	"syscall"
)

// sameDevice reports whether f lies on the filesystem of dir.
func sameDevice(f *os.File, dir string) (bool, error) {
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	di, err := os.Stat(dir)
	if err != nil {
		return false, err
	}
	fs, ok1 := fi.Sys().(*syscall.Stat_t)
	ds, ok2 := di.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 {
		return false, nil // no device numbers here: copy
	}
	return fs.Dev == ds.Dev, nil
}
