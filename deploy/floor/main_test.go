package main

import (
	"bytes"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// rowsFile writes n rows with ids 1..n into a rows file, as deploy/bench
// copies them from a server's database.
func rowsFile(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rows.db")
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE rows (event_type, application, version, platform, user_id, session_id, value, id INTEGER PRIMARY KEY, time)`); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if _, err := tx.Exec(`INSERT INTO rows VALUES (?, ?, '1.0.3', 'Linux', ?, ?, '{"level":3}', ?, ?)`,
			[]string{"startup", "death", "level_start"}[i%3], []string{"Star Farm", "Cave Runner"}[i%2],
			fmt.Sprintf("%08x", i*2654435761%1000003), fmt.Sprintf("%064x", i%97), i,
			fmt.Sprintf("2026-11-%02d 10:00:%02d.000000", 28+i%3, i%60)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return path
}

func floor(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(args, &out); err != nil {
		t.Fatalf("floor %s: %v", strings.Join(args, " "), err)
	}
	return out.String()
}

func queryInt(t *testing.T, path, q string) int64 {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	if err := db.QueryRow(q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func TestFloor_BaseThenLoad(t *testing.T) {
	rows := rowsFile(t, 700)
	path := filepath.Join(t.TempDir(), "floor.db")
	// The base (the rows before the load), then the load in transactions
	// of 150 rows, summaries kept up to date.
	if out := floor(t, "-rows", rows, "-db", path, "-upto", "300", "-summaries"); !strings.HasPrefix(out, "FLOOR rows=300 write_bytes=") {
		t.Fatalf("base: %q", out)
	}
	if out := floor(t, "-rows", rows, "-db", path, "-after", "300", "-tx", "150", "-summaries"); !strings.HasPrefix(out, "FLOOR rows=400 ") {
		t.Fatalf("load: %q", out)
	}
	for q, want := range map[string]int64{
		"SELECT count(*) FROM event":                                      700,
		"SELECT sum(id) FROM event":                                       700 * 701 / 2,
		"SELECT built_id FROM stats_state":                                700,
		"SELECT sum(events) FROM stats_activity":                          700,
		"SELECT count(*) FROM sqlite_schema WHERE name LIKE 'ix_event_%'": 5,
		"SELECT count(*) FROM sqlite_schema WHERE name = 'event_staging'": 0,
	} {
		if got := queryInt(t, path, q); got != want {
			t.Errorf("%s = %d, want %d", q, got, want)
		}
	}
	// The very rows, column for column.
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("ATTACH DATABASE ? AS r", rows); err != nil {
		t.Fatal(err)
	}
	var differ int
	if err := db.QueryRow("SELECT count(*) FROM (SELECT " + columns + " FROM r.rows EXCEPT SELECT " + columns + " FROM event)").Scan(&differ); err != nil || differ != 0 {
		t.Errorf("rows not in event as they were: %d (%v)", differ, err)
	}
	// Everything is in the database file: the WAL was checkpointed and
	// truncated.
	if got := queryInt(t, path, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check != 'ok'"); got != 0 {
		t.Errorf("integrity_check: %d problems", got)
	}
}

func TestFloor_Commits(t *testing.T) {
	rows := rowsFile(t, 50)
	path := filepath.Join(t.TempDir(), "floor.db")
	if out := floor(t, "-rows", rows, "-db", path, "-commits", "20"); !strings.HasPrefix(out, "FLOOR rows=50 ") {
		t.Fatalf("%q", out)
	}
	if got := queryInt(t, path, "SELECT count(*) FROM event"); got != 50 {
		t.Errorf("event holds %d rows, want 50", got)
	}
	if got := queryInt(t, path, "SELECT count(*) FROM floor_staging"); got != 0 {
		t.Errorf("floor_staging holds %d rows, want 0 (moved into event)", got)
	}
	if got := queryInt(t, path, "SELECT count(*) FROM sqlite_schema WHERE name = 'stats_state'"); got != 0 {
		t.Errorf("summary tables made without -summaries")
	}
}

func TestFloor_Usage(t *testing.T) {
	for _, args := range [][]string{{}, {"-rows", "x"}, {"-rows", "x", "-db", "y", "-tx", "-1"}, {"-rows", "x", "-db", "y", "extra"}} {
		err := run(args, &bytes.Buffer{})
		if _, ok := err.(usageError); !ok {
			t.Errorf("floor %q: got %v, want a usage error", args, err)
		}
	}
}
