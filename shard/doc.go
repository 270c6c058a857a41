// Package shard owns the SQLite database: its schema and pragmas, the single
// write connection, the writer (the one goroutine that commits queued events
// in groups, DESIGN.md) and its health. It knows nothing of HTTP, and
// nothing of other processes: shard/link carries events from worker
// processes to the writer.
package shard
