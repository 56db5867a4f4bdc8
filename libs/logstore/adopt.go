package logstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrCrossDevice says that a file cannot be adopted because it lies on
// another filesystem than the store: the caller Puts its bytes instead.
var ErrCrossDevice = errors.New("logstore: the file is on another filesystem than the store")

// LocalFile is a finished local file to store under Key.
type LocalFile struct {
	Key  string
	File *os.File // open; its name is its path; nothing writes it any more
}

// Adopt stores local files by moving them into place, sparing Put's copy:
// every file is fsynced, then renamed over its key's object, then each
// distinct directory is fsynced once. When Adopt returns nil every object
// is complete, in place and durable, as after Put. Files on another
// filesystem are refused with ErrCrossDevice before anything moves. After
// an error some files may have moved and others not; an adopted object is
// whole either way (a rename replaces it at once), and the open files
// still read their bytes, so the caller can Put them.
func (d *Disk) Adopt(ctx context.Context, files []LocalFile) error {
	dsts := make([]string, len(files))
	for i, f := range files {
		if err := ValidateKey(f.Key); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("logstore: adopt %s: %w", f.Key, err)
		}
		dsts[i] = d.file(f.Key)
		if err := os.MkdirAll(filepath.Dir(dsts[i]), 0o700); err != nil {
			return fmt.Errorf("logstore: adopt %s: %w", f.Key, err)
		}
		same, err := sameDevice(f.File, filepath.Dir(dsts[i]))
		if err != nil {
			return fmt.Errorf("logstore: adopt %s: %w", f.Key, err)
		}
		if !same {
			return fmt.Errorf("logstore: adopt %s: %w", f.Key, ErrCrossDevice)
		}
	}
	for _, f := range files {
		if err := f.File.Sync(); err != nil {
			return fmt.Errorf("logstore: adopt %s: fsync: %w", f.Key, err)
		}
	}
	dirs := map[string]bool{}
	for i, f := range files {
		if err := os.Rename(f.File.Name(), dsts[i]); err != nil {
			if errors.Is(err, syscall.EXDEV) {
				err = ErrCrossDevice
			}
			return fmt.Errorf("logstore: adopt %s: rename: %w", f.Key, err)
		}
		dirs[filepath.Dir(dsts[i])] = true
	}
	// Make the renames durable, once per directory (see Put).
	for dir := range dirs {
		if df, err := os.Open(dir); err == nil {
			_ = df.Sync()
			_ = df.Close()
		}
	}
	return nil
}
