package link_test

import (
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/gocolytics/gocolytics/shard"
)

// openDB opens the database a link serves.
func openDB(tb testing.TB, path string, opts shard.Options) *shard.DB {
	tb.Helper()
	db := shard.New(path, opts, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := db.Open(); err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// sqlDB reads the database file directly.
func sqlDB(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// testEvent is event number i, with a distinct session.
func testEvent(i int) shard.Event {
	return shard.Event{
		EventType: "level_complete", Application: "My Game", Version: "1.0.3", Platform: "Linux",
		UserID: "7acafdde", SessionID: fmt.Sprintf("session-%d", i),
		Value: fmt.Sprintf(`{"i":%d}`, i), Time: time.Date(2026, 11, 28, 2, 19, 55, 244281000, time.UTC),
	}
}
