package main

import (
	"os"
	"runtime"
	"sync"
)

// blockingGoroutines are the goroutines of the process that owns the
// database which spend much of their time inside SQLite calls that block
// their thread: the writer (the fdatasync of every group commit, merges)
// and the checkpointer (copying the WAL, syncing the database file).
const blockingGoroutines = 2

// writerProcs gives the Go scheduler a P more than its default for each of
// blockingGoroutines, unless GOMAXPROCS is set. A goroutine inside a C call
// holds its P. With as many Ps as cores, the writer's P is out of the
// handlers' reach during each group commit's fdatasync, and the handlers
// that the last commit released wait in that P's run queue until the
// other P steals them or the runtime's monitor takes the P back from the
// writer's thread (which then queues for a P again when its call
// returns). With a P to spare, an idle P picks them up at once. Measured
// on 2 cores: 1.16-1.22x the events/s of single events at 64 connections
// (shard/DESIGN.md, "Where a request's CPU goes"). A P that nothing runs
// on costs nothing. Called by the process that owns the database, before
// it opens; once a process (tests open several).
var writerProcs = sync.OnceFunc(func() {
	runtime.GOMAXPROCS(procsWithWriter(os.Getenv("GOMAXPROCS"), runtime.GOMAXPROCS(0)))
})

// procsWithWriter is the GOMAXPROCS writerProcs sets: the default plus
// blockingGoroutines, or the current one when the GOMAXPROCS environment
// variable is set.
func procsWithWriter(env string, current int) int {
	if env != "" {
		return current
	}
	return current + blockingGoroutines
}
