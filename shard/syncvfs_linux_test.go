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

// The frames of a commit reach the WAL in one write, not two a frame, and
// what each commit wrote is there for another connection at once, with
// synchronous FULL (the WAL synced) and NORMAL (not synced at commits).
func TestDB_Commit_GathersWALWrites(t *testing.T) {
	for _, sync := range []string{"FULL", "NORMAL"} {
		t.Run(sync, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.db")
			w := openDB(t, path, shard.Options{Synchronous: sync})
			reader := sqlDB(t, path)
			if err := w.Write(0, []shard.Event{testEvent(0)}); err != nil {
				t.Fatal(err)
			}
			const commits, perCommit = 5, 200
			before := shard.WALWrites()
			stored := 1
			for c := 0; c < commits; c++ {
				events := make([]shard.Event, perCommit)
				for i := range events {
					events[i] = testEvent(stored + i)
				}
				if err := w.Write(0, events); err != nil {
					t.Fatal(err)
				}
				stored += perCommit
				var n int
				if err := reader.QueryRow("SELECT count(*) FROM event_all").Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != stored {
					t.Fatalf("after commit %d another connection counts %d rows, want %d", c+1, n, stored)
				}
			}
			// 200 events are some 8 pages of the staging table: 16 writes
			// a commit when each frame's header and page are written
			// apart. A merge between the commits may add its own.
			if got := shard.WALWrites() - before; got > 2*commits {
				t.Errorf("%d commits of %d events made %d WAL writes, want at most %d", commits, perCommit, got, 2*commits)
			}
			// A transaction larger than one gathered write (the unix VFS
			// writes at most 128 KiB a call) goes in several.
			large := make([]shard.Event, 5000)
			for i := range large {
				large[i] = testEvent(stored + i)
			}
			if err := w.Write(0, large); err != nil {
				t.Fatal(err)
			}
			stored += len(large)
			var n int
			if err := reader.QueryRow("SELECT count(*) FROM event_all").Scan(&n); err != nil || n != stored {
				t.Fatalf("after a commit of 5,000 events another connection counts %d rows (%v), want %d", n, err, stored)
			}
		})
	}
}
