package querytest

import (
	"bytes"
	"errors"
	"os"
	"strconv"
)

// The statistics of a large database are bound by what they read: a 30-day
// funnel on BenchGame reads about 250 MB of pages. Whether those pages are
// in the operating system's page cache decides whether a request takes its
// usual time or waits for the disk (shard/query/DESIGN.md, "The first
// request after a pause"). These helpers let the benchmarks say which case
// they measured.

// ErrNoPageCache is a system where the helpers below cannot see or drop a
// file's pages (not Linux, or a file system that keeps them, such as tmpfs).
var ErrNoPageCache = errors.New("the page cache of the file cannot be dropped here")

// ReadBytes is how many bytes this process has had read from storage so
// far (/proc/self/io's read_bytes: reads the page cache answered are not
// counted), or -1 where the system does not say.
func ReadBytes() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("read_bytes: ")); ok {
			n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}
