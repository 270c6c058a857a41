package shard_test

import (
	"path/filepath"
	"testing"

	"github.com/gocolytics/gocolytics/shard"
)

// On Linux the writer's commits sync the WAL with fdatasync (after the
// WAL's first sync, which syncs its folder too), and what they committed is
// there for another connection.
func TestDB_Commit_Fdatasync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	w := openDB(t, path, shard.Options{})
	if !shard.SyncVFSRegistered() {
		t.Fatal("the fdatasync VFS was not registered")
	}
	if err := w.Write(0, []shard.Event{testEvent(0)}); err != nil {
		t.Fatal(err)
	}
	before := shard.Datasyncs()
	const commits = 5
	for i := 1; i <= commits; i++ {
		if err := w.Write(0, []shard.Event{testEvent(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := shard.Datasyncs() - before; got < commits {
		t.Errorf("%d commits made %d fdatasync calls, want at least %d", commits, got, commits)
	}
	var n int
	if err := sqlDB(t, path).QueryRow("SELECT count(*) FROM event_all").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != commits+1 {
		t.Errorf("%d rows, want %d", n, commits+1)
	}
}
