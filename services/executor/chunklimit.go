package executor

import (
	"context"
	"time"

	"github.com/testum/testum/libs/bus"
)

// chunkRefresh is how often an executor reads the output stream's largest
// chunk again (an earlier testum starting during an upgrade can lower it).
const chunkRefresh = 30 * time.Second

// chunkLimit is the largest output chunk this executor's transcripts
// publish: bus.ChunkLimit as last read, bus.LegacyChunk (which every output
// stream takes) until a read succeeds.
func (e *Executor) chunkLimit() int {
	if n := e.chunk.Load(); n > 0 {
		return int(n)
	}
	return bus.LegacyChunk
}

// readChunkLimit reads the output stream's chunk limit; a failure keeps
// the last one and is logged.
func (e *Executor) readChunkLimit(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := bus.ChunkLimit(rctx, e.js)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("reading the output stream's message size; output chunks stay at the last size", "chunk", e.chunkLimit(), "err", err)
		}
		return
	}
	if old := e.chunk.Swap(int64(n)); old != int64(n) && old != 0 {
		e.log.Info("output chunk size follows the output stream", "chunk", n, "was", old)
	}
}

// watchChunkLimit reads the chunk limit again every chunkRefresh until ctx
// ends.
func (e *Executor) watchChunkLimit(ctx context.Context) {
	t := time.NewTicker(chunkRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.readChunkLimit(ctx)
		}
	}
}
