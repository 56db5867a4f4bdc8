package logstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Disk is a Store keeping each object in a file under a root directory.
// Writes are atomic: Put writes a temporary file in the destination
// directory, fsyncs it and renames it over the destination.
type Disk struct {
	root string
}

var _ Store = (*Disk)(nil)

// NewDisk returns a Disk store rooted at dir, creating it with mode 0700 if
// needed.
func NewDisk(dir string) (*Disk, error) {
	if dir == "" {
		return nil, errors.New("logstore: empty directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("logstore: resolving %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("logstore: creating %s: %w", abs, err)
	}
	return &Disk{root: abs}, nil
}

// Dir is the root directory.
func (d *Disk) Dir() string { return d.root }

// String describes the store.
func (d *Disk) String() string { return "logstore.Disk(" + d.root + ")" }

func (d *Disk) file(key string) string {
	return filepath.Join(d.root, filepath.FromSlash(key))
}

// Put implements Store.
func (d *Disk) Put(ctx context.Context, key string, r io.Reader, size int64) (err error) {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if size < -1 {
		return fmt.Errorf("logstore: put %s: invalid size %d", key, size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("logstore: put %s: %w", key, err)
	}
	dst := d.file(key)
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("logstore: put %s: %w", key, err)
	}
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return fmt.Errorf("logstore: put %s: %w", key, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	src := &ctxReader{ctx: ctx, r: r}
	var n int64
	if size >= 0 {
		// Read one byte more than announced to detect a longer reader.
		n, err = io.Copy(f, io.LimitReader(src, size+1))
	} else {
		n, err = io.Copy(f, src)
	}
	if err != nil {
		return fmt.Errorf("logstore: put %s: writing: %w", key, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("logstore: put %s: size mismatch: announced %d bytes, reader gave %s", key, size, sizeDesc(n, size))
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("logstore: put %s: fsync: %w", key, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("logstore: put %s: close: %w", key, err)
	}
	if err = os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("logstore: put %s: rename: %w", key, err)
	}
	// Make the rename durable. Some filesystems cannot fsync directories;
	// the object is already in place, so that is not an error.
	if df, derr := os.Open(dir); derr == nil {
		_ = df.Sync()
		_ = df.Close()
	}
	return nil
}

func sizeDesc(n, size int64) string {
	if n > size {
		return "more"
	}
	return fmt.Sprintf("%d", n)
}

// Get implements Store.
func (d *Disk) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("logstore: get %s: %w", key, err)
	}
	f, err := os.Open(d.file(key))
	if err != nil {
		return nil, d.wrap("get", key, err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, d.wrap("get", key, err)
	}
	if !st.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("logstore: get %s: %w", key, ErrNotFound)
	}
	return f, nil
}

// Stat implements Store.
func (d *Disk) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidateKey(key); err != nil {
		return Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("logstore: stat %s: %w", key, err)
	}
	st, err := os.Stat(d.file(key))
	if err != nil {
		return Info{}, d.wrap("stat", key, err)
	}
	if !st.Mode().IsRegular() {
		return Info{}, fmt.Errorf("logstore: stat %s: %w", key, ErrNotFound)
	}
	return Info{Key: key, Size: st.Size(), Modified: st.ModTime().UTC()}, nil
}

// Delete implements Store.
func (d *Disk) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("logstore: delete %s: %w", key, err)
	}
	p := d.file(key)
	st, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, notDir) || (err == nil && st.IsDir()) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("logstore: delete %s: %w", key, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("logstore: delete %s: %w", key, err)
	}
	return nil
}

// List implements Store.
func (d *Disk) List(ctx context.Context, prefix string) ([]Info, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	// Walk only the deepest directory the prefix names in full.
	start := d.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = filepath.Join(d.root, filepath.FromSlash(prefix[:i]))
	}
	var out []Info
	err := filepath.WalkDir(start, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, notDir) {
				return nil // prefix directory absent, or removed while walking
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(e.Name(), tmpPrefix) || !e.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted while walking
		}
		if err != nil {
			return err
		}
		out = append(out, Info{Key: key, Size: fi.Size(), Modified: fi.ModTime().UTC()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("logstore: list %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// wrap maps "no such file" (including a path element being a file) to
// ErrNotFound.
func (d *Disk) wrap(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, notDir) {
		return fmt.Errorf("logstore: %s %s: %w", op, key, ErrNotFound)
	}
	return fmt.Errorf("logstore: %s %s: %w", op, key, err)
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
