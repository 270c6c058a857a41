package shardtest

import (
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
)

// Open opens the database at path with its writer, logging nowhere, and
// closes it when the test ends.
func Open(tb testing.TB, path string, opts shard.Options) *shard.DB {
	tb.Helper()
	db := shard.New(path, opts, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := db.Open(); err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// SQL is a connection pool of its own on the database at path, as a
// reader beside the writer (sqlite3, pandas) would have; closed when the
// test ends.
func SQL(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// Event is event number i: the same fields as every other, but its own
// session and value.
func Event(i int) shard.Event {
	return shard.Event{
		EventType: "level_complete", Application: "My Game", Version: "1.0.3", Platform: "Linux",
		UserID: "7acafdde", SessionID: fmt.Sprintf("session-%d", i),
		Value: fmt.Sprintf(`{"i":%d}`, i), Time: time.Date(2026, 11, 28, 2, 19, 55, 244281000, time.UTC),
	}
}
