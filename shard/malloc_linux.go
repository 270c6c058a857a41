package shard

/*
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

// gc_malloc_tune sets glibc's malloc for SQLite's allocation pattern (see
// tuneMalloc); it does nothing with another C library.
static void gc_malloc_tune(int arenas, int mmap_threshold) {
#ifdef __GLIBC__
	if (arenas > 0) mallopt(M_ARENA_MAX, arenas);
	if (mmap_threshold > 0) mallopt(M_MMAP_THRESHOLD, mmap_threshold);
#endif
}
*/
import "C"

import "os"

// tuneMalloc keeps the memory SQLite frees from staying resident (DESIGN.md,
// "Memory"). SQLite allocates through the C library's malloc, from whichever
// thread the Go runtime runs the writer, a reader or a checkpoint on, and a
// merge's sorts (the summaries' GROUP BY) grow buffers of several MiB and
// free them again. glibc gives each thread that meets contention an arena of
// its own (up to 8 per core), each keeping what was freed in it, and after
// the first large buffer is freed it raises its mmap threshold, so that
// later large buffers come from those arenas and stay resident after free.
// Two arenas and a fixed threshold of 128 KiB (glibc's starting value; a
// fixed one is never raised) return a freed sort buffer to the system at
// once. MALLOC_ARENA_MAX and MALLOC_MMAP_THRESHOLD_ in the environment,
// glibc's own settings, win over these.
func tuneMalloc() {
	arenas, threshold := 2, 128<<10
	if _, set := os.LookupEnv("MALLOC_ARENA_MAX"); set {
		arenas = 0
	}
	if _, set := os.LookupEnv("MALLOC_MMAP_THRESHOLD_"); set {
		threshold = 0
	}
	C.gc_malloc_tune(C.int(arenas), C.int(threshold))
}

func init() { tuneMalloc() }
