//go:build unix

package shard_test

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/gocolytics/gocolytics/shard"
)

// TestDB_FileModes: with the usual umask 022, the database, its -wal and
// -shm are created 0600 and new folders 0750: other local users read none
// of the events.
func TestDB_FileModes(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "new")
	path := filepath.Join(dir, "events.db")
	db := openDB(t, path, shard.Options{})
	if err := db.Write(0, []shard.Event{testEvent(1)}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{dir: 0o750 | os.ModeDir, path: 0o600, path + "-wal": 0o600, path + "-shm": 0o600} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode(); got != want {
			t.Errorf("%s: got mode %v, want %v", filepath.Base(name), got, want)
		}
	}
}

// TestDB_Open_FailureLeavesNothing: when opening fails, the folders and
// files it created are gone again, and what was there before is left.
func TestDB_Open_FailureLeavesNothing(t *testing.T) {
	base := t.TempDir()
	path := filepath.Join(base, "a", "b", "events.db")
	// A folder where the -wal file belongs: SQLite cannot open the WAL.
	if err := os.MkdirAll(path+"-wal", 0o755); err != nil {
		t.Fatal(err)
	}
	db := shard.New(path, shard.Options{}, quietLogger())
	if err := db.Open(); err == nil {
		db.Close()
		t.Fatal("opened a database whose -wal cannot be created")
	}
	var got []string
	filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
		if p != base {
			rel, _ := filepath.Rel(base, p)
			got = append(got, rel)
		}
		return err
	})
	if want := []string{"a", "a/b", "a/b/events.db-wal"}; !slices.Equal(got, want) {
		t.Errorf("after a failed open: got %q, want %q", got, want)
	}
}
