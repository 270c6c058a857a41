package query

import "testing"

// SetChunkIDs makes the funnel and value statistics read pieces of at most
// n ids until the test ends, so that a small dataset has many. Not for
// tests that run in parallel.
func SetChunkIDs(tb testing.TB, n int64) {
	old := chunkIDs
	chunkIDs = n
	tb.Cleanup(func() { chunkIDs = old })
}
