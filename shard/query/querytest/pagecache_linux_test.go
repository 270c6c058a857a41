package querytest_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/gocolytics/gocolytics/shard/query/querytest"
)

// TestEvict checks what the cold benchmarks rely on: Evict drops a file's
// pages, Resident sees it, and reading the file again counts in ReadBytes.
func TestEvict(t *testing.T) {
	const size = 4 << 20
	dir := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC {
		// tmpfs keeps its pages: the file has nowhere else to be.
		t.Skipf("the temporary folder %s is on tmpfs, whose pages cannot be dropped", dir)
	}
	path := filepath.Join(dir, "pages")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bytes.Repeat([]byte("gocolytics"), size/10+1)[:size]); err != nil {
		t.Fatal(err)
	}
	// Written pages are dirty until synced, and only clean ones can go.
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// The kernel may reclaim a few clean pages at any moment (this VM's
	// DAMON scheme does), so "resident" means most of the file, not all.
	if got, err := querytest.Resident(path); err != nil || got < size*3/4 || got > size {
		t.Errorf("resident after writing: got %d, %v, want %d or a little less", got, err, size)
	}
	if err := querytest.Evict(path); err != nil {
		t.Fatal(err)
	}
	if got, err := querytest.Resident(path); err != nil || got != 0 {
		t.Fatalf("resident after Evict: got %d, %v, want 0", got, err)
	}
	before := querytest.ReadBytes()
	if _, err := os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	if got, err := querytest.Resident(path); err != nil || got < size*3/4 || got > size {
		t.Errorf("resident after a read: got %d, %v, want %d or a little less", got, err, size)
	}
	if before >= 0 {
		if got := querytest.ReadBytes() - before; got < size {
			t.Errorf("storage reads of the evicted file: got %d bytes, want at least %d", got, size)
		}
	}
	if err := querytest.Evict(path); err != nil {
		t.Fatal(err)
	}
	if got, err := querytest.Resident(path); err != nil || got != 0 {
		t.Errorf("resident after Evict: got %d, %v, want 0", got, err)
	}
}
