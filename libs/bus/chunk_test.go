package bus

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/testenv"
)

// TestChunkLimitAcrossVersions: an output stream an earlier testum created
// takes chunks of LegacyChunk only, and ChunkLimit says so; a start of this
// version raises the stream's limit and ChunkLimit gives MaxChunk, which the
// stream then takes; a start asking for less (an earlier version's
// configuration) does not lower it again.
func TestChunkLimitAcrossVersions(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t)
	_, js := srv.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := StreamsConfig{}
	if err := cfg.CheckAndSetDefaults(); err != nil {
		t.Fatal(err)
	}
	legacy := streamConfigs(cfg, 1)[2]
	legacy.MaxMsgSize = LegacyChunk + chunkHeadroom
	if _, err := js.CreateStream(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	if n, err := ChunkLimit(ctx, js); err != nil || n != LegacyChunk {
		t.Fatalf("ChunkLimit of an earlier version's stream = %d, %v; want %d", n, err, LegacyChunk)
	}
	m := OutputMsg{Run: uuid.New(), Idx: 0, Type: TypeStdout, Host: "h", Seq: 1, Attempt: 1, At: time.Now(), Data: make([]byte, MaxChunk)}
	if err := PublishOutput(ctx, js, m); err == nil {
		t.Fatal("the earlier version's stream took a chunk of MaxChunk")
	}

	if err := EnsureStreams(ctx, js, StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	if n, err := ChunkLimit(ctx, js); err != nil || n != MaxChunk {
		t.Fatalf("ChunkLimit after a start = %d, %v; want %d", n, err, MaxChunk)
	}
	if err := PublishOutput(ctx, js, m); err != nil {
		t.Fatalf("a chunk of MaxChunk after a start: %v", err)
	}

	// An earlier version asks for the smaller size: planStream keeps the
	// larger one (what it would apply is what a start updates).
	s, err := js.Stream(ctx, StreamOutput)
	if err != nil {
		t.Fatal(err)
	}
	p := planStream(s.CachedInfo().Config, legacy, false)
	if p.update.MaxMsgSize != MaxChunk+chunkHeadroom {
		t.Fatalf("a start asking for %d would set the max message size to %d", legacy.MaxMsgSize, p.update.MaxMsgSize)
	}
}
