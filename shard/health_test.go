package shard_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

func TestDB_Health(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	db := shard.New(path, shard.Options{BusyTimeout: 50 * time.Millisecond}, quietLogger())
	if err := db.Health(); !errors.Is(err, shard.ErrNotOpen) {
		t.Errorf("before Open: %v, want ErrNotOpen", err)
	}
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Health(); err != nil {
		t.Fatalf("open: %v, want nil", err)
	}

	// A commit that fails on another process's lock makes it unhealthy
	// until one succeeds.
	lock := shardtest.HoldLock(t, path)
	if err := db.Write(0, []shard.Event{testEvent(1)}); !errors.Is(err, shard.ErrBusy) {
		t.Fatalf("write while locked: %v, want ErrBusy", err)
	}
	if err := db.Health(); !errors.Is(err, shard.ErrLastCommit) || !errors.Is(err, shard.ErrBusy) {
		t.Errorf("after a failed commit: %v, want ErrLastCommit wrapping ErrBusy", err)
	}
	lock.Release(t)
	if err := db.Write(0, []shard.Event{testEvent(2)}); err != nil {
		t.Fatal(err)
	}
	if err := db.Health(); err != nil {
		t.Errorf("after a good commit: %v, want nil", err)
	}

	// The file removed under the server: its writes would go nowhere.
	if err := os.Rename(path, path+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := db.Health(); !errors.Is(err, shard.ErrDatabaseAbsent) || !strings.Contains(err.Error(), "h.db") {
		t.Errorf("file moved: %v, want ErrDatabaseAbsent naming it", err)
	}
	if err := os.Rename(path+".moved", path); err != nil {
		t.Fatal(err)
	}

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Health(); !errors.Is(err, shard.ErrClosed) {
		t.Errorf("closed: %v, want ErrClosed", err)
	}
}
