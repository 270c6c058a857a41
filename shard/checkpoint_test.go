package shard_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
)

// TestDB_Checkpointer: with the writer's automatic checkpoint off, the
// checkpointer copies the WAL into the database file once it holds more
// than WALAutocheckpoint frames not yet copied, and keeps up with the
// commits.
func TestDB_Checkpointer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	const pages = 20
	w := openDB(t, path, shard.Options{WALAutocheckpoint: pages})
	for i := range 300 {
		if err := w.Write(0, []shard.Event{testEvent(i)}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for shard.CheckpointRuns(w) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := shard.CheckpointRuns(w); n < 1 {
		t.Fatalf("300 commits, and the checkpointer ran %d checkpoints", n)
	}
	var n int
	if err := sqlDB(t, path).QueryRow("SELECT count(*) FROM event_all").Scan(&n); err != nil || n != 300 {
		t.Fatalf("rows: %d, %v; want 300", n, err)
	}
}
