package sshx

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
)

// An idle stream costs a small buffer, not io.Copy's 32 KiB: x/crypto/ssh
// copies each of a session's streams with io.Copy, which uses the
// writer's ReadFrom.
func TestStreamWriterSmallBuffer(t *testing.T) {
	var mu sync.Mutex
	var got bytes.Buffer
	w := &streamWriter{mu: &mu, w: &got}
	allocs := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := io.Copy(w, onlyReader{strings.NewReader("")}); err != nil {
				b.Fatal(err)
			}
		}
	}).AllocedBytesPerOp()
	if allocs > 4<<10 {
		t.Fatalf("an empty stream allocated %d bytes, want ≤ 4 KiB", allocs)
	}
	// Output is still delivered whole and in order as the buffer grows.
	want := strings.Repeat("0123456789abcdef", 10_000)
	got.Reset()
	n, err := io.Copy(w, onlyReader{io.MultiReader(strings.NewReader(want[:100]), strings.NewReader(want[100:]))})
	if err != nil || n != int64(len(want)) || got.String() != want {
		t.Fatalf("copied %d bytes (err %v), output equal: %v", n, err, got.String() == want)
	}
}

// onlyReader hides a reader's WriterTo, as an ssh channel has none.
type onlyReader struct{ io.Reader }
