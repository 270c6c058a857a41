package gctest

import (
	"database/sql"
	"testing"

	_ "github.com/mattn/go-sqlite3" // the driver the tests read the database with

	"github.com/gocolytics/gocolytics/shard"
)

// Check opens the database at path as a user would (read-write, so that a
// hot WAL left by a crash is recovered), runs PRAGMA integrity_check and
// returns its answer and the marker of every stored event (see Stored).
func Check(tb testing.TB, path string) (integrity string, stored map[string]bool) {
	tb.Helper()
	db := open(tb, "file:"+path+"?_busy_timeout=10000")
	defer db.Close()
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&integrity); err != nil {
		tb.Fatalf("integrity_check of %s: %v", path, err)
	}
	return integrity, readStored(tb, db)
}

// Stored returns the marker of every event stored in the database at path
// (read-only). It fails the test for a marker stored twice, a row without
// a marker, and a row whose columns differ from those NewEvent(marker)
// sends.
func Stored(tb testing.TB, path string) map[string]bool {
	tb.Helper()
	db := open(tb, "file:"+path+"?mode=ro&_busy_timeout=10000")
	defer db.Close()
	return readStored(tb, db)
}

func readStored(tb testing.TB, db *sql.DB) map[string]bool {
	tb.Helper()
	out := map[string]bool{}
	eachMarker(tb, db, func(m string) {
		if out[m] {
			tb.Errorf("%s stored twice", m)
		}
		out[m] = true
	})
	return out
}

// EachMarker calls fn with the marker of each stored event, checking each
// row as Stored does but keeping nothing (for millions of rows).
func EachMarker(tb testing.TB, path string, fn func(marker string)) {
	tb.Helper()
	db := open(tb, "file:"+path+"?mode=ro&_busy_timeout=10000")
	defer db.Close()
	eachMarker(tb, db, fn)
}

func eachMarker(tb testing.TB, db *sql.DB, fn func(marker string)) {
	tb.Helper()
	rows, err := db.Query(`SELECT id, coalesce(json_extract(value, '$.m'), ''), event_type, application, version, platform, user_id, session_id FROM ` + events(tb, db))
	if err != nil {
		tb.Fatalf("read rows: %v", err)
	}
	defer rows.Close()
	bad := 0
	for rows.Next() {
		var id int64
		var m string
		var got Event
		if err := rows.Scan(&id, &m, &got.EventType, &got.Application, &got.Version, &got.Platform, &got.UserID, &got.SessionID); err != nil {
			tb.Fatal(err)
		}
		want := NewEvent(m)
		want.Value, want.APIKey = "", ""
		if m == "" || got != want {
			if bad++; bad <= 5 {
				tb.Errorf("row %d (marker %q) holds %+v, want %+v", id, m, got, want)
			}
			continue
		}
		fn(m)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	if bad > 5 {
		tb.Errorf("%d rows in all do not hold what was sent", bad)
	}
}

// CountRows is the number of events stored: in the event table, and in the
// staging table waiting for their merge.
func CountRows(tb testing.TB, path string) int {
	tb.Helper()
	db := open(tb, "file:"+path+"?mode=ro&_busy_timeout=10000")
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM " + events(tb, db)).Scan(&n); err != nil {
		tb.Fatalf("count rows: %v", err)
	}
	return n
}

// Staged is the number of events in the staging table (0 without one):
// committed, not yet merged into event.
func Staged(tb testing.TB, path string) int {
	tb.Helper()
	db := open(tb, "file:"+path+"?mode=ro&_busy_timeout=10000")
	defer db.Close()
	if events(tb, db) == "event" {
		return 0
	}
	var n int
	if err := db.QueryRow(shard.StagedSQL).Scan(&n); err != nil {
		tb.Fatalf("count staged rows: %v", err)
	}
	return n
}

// events is what the tests read stored events from: the view of event and
// the staging table when the database has one (every committed event is in
// exactly one of them), event otherwise.
func events(tb testing.TB, db *sql.DB) string {
	tb.Helper()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM sqlite_master WHERE type = 'view' AND name = ?", shard.ViewAll).Scan(&n); err != nil {
		tb.Fatalf("read schema: %v", err)
	}
	if n == 1 {
		return shard.ViewAll
	}
	return "event"
}

func open(tb testing.TB, dsn string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		tb.Fatal(err)
	}
	return db
}
