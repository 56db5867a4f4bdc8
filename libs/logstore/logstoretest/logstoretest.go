// Package logstoretest is a compliance suite for logstore.Store
// implementations and a helper that starts a real MinIO server for
// integration tests.
package logstoretest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/testum/testum/libs/logstore"
)

// Run runs the compliance suite. newStore must return an empty store; it is
// called once per subtest.
func Run(t *testing.T, newStore func(t *testing.T) logstore.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s logstore.Store)
	}{
		{"PutGet", testPutGet},
		{"UnknownSize", testUnknownSize},
		{"Empty", testEmpty},
		{"Overwrite", testOverwrite},
		{"Stat", testStat},
		{"NotFound", testNotFound},
		{"Delete", testDelete},
		{"List", testList},
		{"InvalidKeys", testInvalidKeys},
		{"SizeMismatch", testSizeMismatch},
		{"Large", testLarge},
		{"Concurrent", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func put(t *testing.T, s logstore.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(ctx(t), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func get(t *testing.T, s logstore.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(ctx(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q): reading: %v", key, err)
	}
	return b
}

func testPutGet(t *testing.T, s logstore.Store) {
	data := []byte("line 1\nline 2\n\x00binary\xff\n")
	put(t, s, "runs/12/3.log", data)
	if got := get(t, s, "runs/12/3.log"); !bytes.Equal(got, data) {
		t.Fatalf("Get = %q, want %q", got, data)
	}
}

func testUnknownSize(t *testing.T, s logstore.Store) {
	data := []byte(strings.Repeat("x", 1000))
	if err := s.Put(ctx(t), "runs/1/1.log", struct{ io.Reader }{bytes.NewReader(data)}, -1); err != nil {
		t.Fatalf("Put size -1: %v", err)
	}
	if got := get(t, s, "runs/1/1.log"); !bytes.Equal(got, data) {
		t.Fatalf("Get returned %d bytes, want %d", len(got), len(data))
	}
	info, err := s.Stat(ctx(t), "runs/1/1.log")
	if err != nil || info.Size != int64(len(data)) {
		t.Fatalf("Stat = %+v, %v; want size %d", info, err, len(data))
	}
}

func testEmpty(t *testing.T, s logstore.Store) {
	put(t, s, "runs/1/empty.log", nil)
	if got := get(t, s, "runs/1/empty.log"); len(got) != 0 {
		t.Fatalf("Get = %q, want empty", got)
	}
	info, err := s.Stat(ctx(t), "runs/1/empty.log")
	if err != nil || info.Size != 0 {
		t.Fatalf("Stat = %+v, %v; want size 0", info, err)
	}
}

func testOverwrite(t *testing.T, s logstore.Store) {
	put(t, s, "runs/5/1.log", []byte("first version, longer than the second"))
	put(t, s, "runs/5/1.log", []byte("second"))
	if got := get(t, s, "runs/5/1.log"); string(got) != "second" {
		t.Fatalf("Get after overwrite = %q, want %q", got, "second")
	}
	list, err := s.List(ctx(t), "runs/5/")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != 1 || list[0].Size != int64(len("second")) {
		t.Fatalf("List after overwrite = %+v, want one object of size %d", list, len("second"))
	}
}

func testStat(t *testing.T, s logstore.Store) {
	before := time.Now().Add(-time.Minute)
	put(t, s, "runs/7/2.log", []byte("hello"))
	info, err := s.Stat(ctx(t), "runs/7/2.log")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Key != "runs/7/2.log" || info.Size != 5 {
		t.Fatalf("Stat = %+v, want key runs/7/2.log size 5", info)
	}
	if info.Modified.Before(before) || info.Modified.After(time.Now().Add(time.Minute)) {
		t.Fatalf("Stat.Modified = %v, want about now", info.Modified)
	}
}

func testNotFound(t *testing.T, s logstore.Store) {
	put(t, s, "runs/8/1.log", []byte("x"))
	for _, key := range []string{"runs/8/2.log", "runs/9/1.log", "runs/8", "runs/8/1.log/x"} {
		if _, err := s.Get(ctx(t), key); !errors.Is(err, logstore.ErrNotFound) {
			t.Errorf("Get(%q) error = %v, want ErrNotFound", key, err)
		}
		if _, err := s.Stat(ctx(t), key); !errors.Is(err, logstore.ErrNotFound) {
			t.Errorf("Stat(%q) error = %v, want ErrNotFound", key, err)
		}
	}
}

func testDelete(t *testing.T, s logstore.Store) {
	put(t, s, "runs/3/1.log", []byte("a"))
	put(t, s, "runs/3/2.log", []byte("b"))
	if err := s.Delete(ctx(t), "runs/3/1.log"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(ctx(t), "runs/3/1.log"); !errors.Is(err, logstore.ErrNotFound) {
		t.Fatalf("Get after Delete: error = %v, want ErrNotFound", err)
	}
	if got := get(t, s, "runs/3/2.log"); string(got) != "b" {
		t.Fatalf("sibling after Delete = %q, want %q", got, "b")
	}
	for _, key := range []string{"runs/3/1.log", "runs/404/1.log", "never"} {
		if err := s.Delete(ctx(t), key); err != nil {
			t.Errorf("Delete(%q) of missing key: %v", key, err)
		}
	}
}

func testList(t *testing.T, s logstore.Store) {
	keys := []string{"runs/2/1.log", "runs/10/2.log", "runs/10/1.log", "runs/1/1.log", "other/x.log", "runs-top.log"}
	for i, k := range keys {
		put(t, s, k, bytes.Repeat([]byte{'a'}, i+1))
	}
	check := func(prefix string, want ...string) {
		t.Helper()
		list, err := s.List(ctx(t), prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		var got []string
		for _, in := range list {
			got = append(got, in.Key)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("List(%q) = %v, want %v", prefix, got, want)
		}
	}
	check("", "other/x.log", "runs-top.log", "runs/1/1.log", "runs/10/1.log", "runs/10/2.log", "runs/2/1.log")
	check("runs/", "runs/1/1.log", "runs/10/1.log", "runs/10/2.log", "runs/2/1.log")
	check("runs/1", "runs/1/1.log", "runs/10/1.log", "runs/10/2.log")
	check("runs/1/", "runs/1/1.log")
	check("runs", "runs-top.log", "runs/1/1.log", "runs/10/1.log", "runs/10/2.log", "runs/2/1.log")
	check("runs/10/2.log", "runs/10/2.log")
	check("nothing/")
	check("runs/99/")

	list, err := s.List(ctx(t), "runs/10/")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != 2 || list[0].Size != 3 || list[1].Size != 2 || list[0].Modified.IsZero() {
		t.Fatalf("List(runs/10/) = %+v, want sizes 3 and 2 with times", list)
	}
}

// InvalidKeys are rejected by every Store.
var InvalidKeys = []string{
	"", "/abs.log", "../escape.log", "runs/../../escape.log", "runs/./1.log", "runs/..",
	`runs\1.log`, "runs//1.log", "runs/", "runs/1.log\x00", "runs/\n.log", "runs/.tmp-x",
	strings.Repeat("a", logstore.MaxKeyLen+1),
}

func testInvalidKeys(t *testing.T, s logstore.Store) {
	c := ctx(t)
	for _, key := range InvalidKeys {
		if err := s.Put(c, key, strings.NewReader("x"), 1); !errors.Is(err, logstore.ErrInvalidKey) {
			t.Errorf("Put(%q) error = %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.Get(c, key); !errors.Is(err, logstore.ErrInvalidKey) {
			t.Errorf("Get(%q) error = %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.Stat(c, key); !errors.Is(err, logstore.ErrInvalidKey) {
			t.Errorf("Stat(%q) error = %v, want ErrInvalidKey", key, err)
		}
		if err := s.Delete(c, key); !errors.Is(err, logstore.ErrInvalidKey) {
			t.Errorf("Delete(%q) error = %v, want ErrInvalidKey", key, err)
		}
	}
	for _, prefix := range []string{"/abs", "../", "runs/../x", `runs\`} {
		if _, err := s.List(c, prefix); !errors.Is(err, logstore.ErrInvalidKey) {
			t.Errorf("List(%q) error = %v, want ErrInvalidKey", prefix, err)
		}
	}
	list, err := s.List(c, "")
	if err != nil || len(list) != 0 {
		t.Fatalf("List after invalid puts = %+v, %v; want empty", list, err)
	}
}

func testSizeMismatch(t *testing.T, s logstore.Store) {
	put(t, s, "runs/4/1.log", []byte("original"))
	if err := s.Put(ctx(t), "runs/4/1.log", strings.NewReader("short"), 100); err == nil {
		t.Fatal("Put with a reader shorter than size succeeded")
	}
	if got := get(t, s, "runs/4/1.log"); string(got) != "original" {
		t.Fatalf("after failed Put, Get = %q, want the original content", got)
	}
}

// LargeSize is the size of the object testLarge writes with an unknown size,
// larger than one 8 MiB part so that S3 stores use a multipart upload.
const LargeSize = 12<<20 + 12345

func testLarge(t *testing.T, s logstore.Store) {
	data := make([]byte, LargeSize)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	// Hide the concrete reader type so no backend can discover the length.
	if err := s.Put(ctx(t), "runs/big/1.log", struct{ io.Reader }{bytes.NewReader(data)}, -1); err != nil {
		t.Fatalf("Put large: %v", err)
	}
	info, err := s.Stat(ctx(t), "runs/big/1.log")
	if err != nil || info.Size != LargeSize {
		t.Fatalf("Stat large = %+v, %v; want size %d", info, err, LargeSize)
	}
	if got := get(t, s, "runs/big/1.log"); sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("large object corrupted: got %d bytes, want %d", len(got), len(data))
	}
}

func testConcurrent(t *testing.T, s logstore.Store) {
	const workers, rounds = 8, 5
	c := ctx(t)
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*2)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				// Every worker writes its own key and a shared one.
				own := fmt.Sprintf("runs/c/%d.log", w)
				data := []byte(fmt.Sprintf("worker %d round %d\n", w, r))
				if err := s.Put(c, own, bytes.NewReader(data), int64(len(data))); err != nil {
					errs <- fmt.Errorf("Put(%s): %w", own, err)
				}
				if err := s.Put(c, "runs/c/shared.log", bytes.NewReader(data), -1); err != nil {
					errs <- fmt.Errorf("Put(shared): %w", err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for w := range workers {
		want := fmt.Sprintf("worker %d round %d\n", w, rounds-1)
		if got := get(t, s, fmt.Sprintf("runs/c/%d.log", w)); string(got) != want {
			t.Errorf("worker %d final content = %q, want %q", w, got, want)
		}
	}
	shared := string(get(t, s, "runs/c/shared.log"))
	if !strings.HasPrefix(shared, "worker ") || strings.Count(shared, "\n") != 1 {
		t.Errorf("shared object = %q, want exactly one complete write", shared)
	}
	list, err := s.List(c, "runs/c/")
	if err != nil || len(list) != workers+1 {
		t.Fatalf("List = %d objects, %v; want %d", len(list), err, workers+1)
	}
}
