package logstore

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

func localFile(t *testing.T, dir, name, content string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	return f
}

func getString(t *testing.T, d *Disk, key string) string {
	t.Helper()
	r, err := d.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDiskAdopt: files on the store's filesystem are moved into place, not
// copied (the object is the very file), replacing an old object; the
// sources are gone and no temporary file is left.
func TestDiskAdopt(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	d, err := NewDisk(filepath.Join(root, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := d.Put(ctx, "runs/r/0.log", stringsReader("old"), 3); err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(root, "spool")
	if err := os.Mkdir(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	log, idx := localFile(t, spool, "a.log", "the output\n"), localFile(t, spool, "a.idx", "the index\n")
	before, err := log.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Adopt(ctx, []LocalFile{{Key: "runs/r/0.log", File: log}, {Key: "runs/r/0.idx", File: idx}}); err != nil {
		t.Fatal(err)
	}
	if got := getString(t, d, "runs/r/0.log"); got != "the output\n" {
		t.Fatalf("adopted log %q", got)
	}
	if got := getString(t, d, "runs/r/0.idx"); got != "the index\n" {
		t.Fatalf("adopted index %q", got)
	}
	after, err := os.Stat(d.file("runs/r/0.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Fatal("the log was copied, not moved")
	}
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Fatalf("the spool still holds %d files", len(left))
	}
	if left, _ := os.ReadDir(filepath.Join(d.Dir(), "runs", "r")); len(left) != 2 {
		t.Fatalf("the run's directory holds %d entries, want the 2 objects", len(left))
	}
}

// TestDiskAdoptRefuses: a bad key, an ended context and a file on another
// filesystem are refused before anything moves.
func TestDiskAdoptRefuses(t *testing.T) {
	t.Parallel()
	d, err := NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := localFile(t, t.TempDir(), "x.log", "x")
	if err := d.Adopt(context.Background(), []LocalFile{{Key: "../x", File: f}}); err == nil {
		t.Fatal("adopted under a bad key")
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Adopt(ended, []LocalFile{{Key: "runs/r/0.log", File: f}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("adopt with an ended context: %v", err)
	}
	if _, err := os.Stat(f.Name()); err != nil {
		t.Fatalf("the refused file moved: %v", err)
	}
	// /dev/shm is a tmpfs on Linux: another filesystem than the test's temp dir.
	shm, err := os.MkdirTemp("/dev/shm", "adopt-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(shm) })
	other := localFile(t, shm, "y.log", "y")
	if same, _ := sameDevice(other, d.Dir()); same {
		t.Skip("/dev/shm is on the store's filesystem here")
	}
	err = d.Adopt(context.Background(), []LocalFile{{Key: "runs/r/0.log", File: f}, {Key: "runs/r/1.log", File: other}})
	if !errors.Is(err, ErrCrossDevice) {
		t.Fatalf("adopt across filesystems: %v", err)
	}
	for _, p := range []string{f.Name(), other.Name()} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s moved though the adoption was refused: %v", p, err)
		}
	}
	if _, err := d.Stat(context.Background(), "runs/r/0.log"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an object appeared: %v", err)
	}
}
