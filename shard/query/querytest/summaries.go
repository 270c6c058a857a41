package querytest

import (
	"context"
	"database/sql"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
)

// WithoutSummaries copies the database at path (closed, merged) to a new
// file whose summary tables are marked unusable, as a run with merging off
// leaves them: the statistics read its raw rows. It returns the copy's path.
func WithoutSummaries(tb testing.TB, path string) string {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), "raw-"+filepath.Base(path))
	CopyFile(tb, path, out)
	db, err := sql.Open("sqlite3", "file:"+out)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("DELETE FROM " + shard.SummaryState); err != nil {
		tb.Fatal(err)
	}
	return out
}

// Summarised says whether the database's summary tables are kept, so that
// the statistics read them (and the rows above their watermark raw).
func Summarised(tb testing.TB, db *sql.DB) bool {
	tb.Helper()
	var n int
	err := db.QueryRow("SELECT count(*) FROM sqlite_schema WHERE name = ?", shard.SummaryState).Scan(&n)
	if err == nil && n > 0 {
		err = db.QueryRow("SELECT count(*) FROM " + shard.SummaryState).Scan(&n)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return n > 0
}

// summarisedAll says whether the database's summary tables cover every row.
func summarisedAll(tb testing.TB, db *sql.DB) bool {
	tb.Helper()
	if !Summarised(tb, db) {
		return false
	}
	var ok bool
	err := db.QueryRow("SELECT built_id >= (SELECT coalesce(max(id), 0) FROM event) FROM " + shard.SummaryState).Scan(&ok)
	if err != nil && err != sql.ErrNoRows {
		tb.Fatal(err)
	}
	return ok
}

// Events reads back every event of event, in id order.
func Events(tb testing.TB, db *sql.DB) []shard.Event {
	tb.Helper()
	rows, err := db.Query("SELECT time || '', application, user_id, session_id, event_type, version, platform, value FROM event ORDER BY id")
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []shard.Event
	for rows.Next() {
		var e shard.Event
		var t string
		if err := rows.Scan(&t, &e.Application, &e.UserID, &e.SessionID, &e.EventType, &e.Version, &e.Platform, &e.Value); err != nil {
			tb.Fatal(err)
		}
		if e.Time, err = time.Parse("2006-01-02 15:04:05.999999999", t); err != nil {
			tb.Fatal(err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// CachedSummarised returns the path of a copy of CachedRealistic(r)'s
// database whose summary tables the writer has built (in the background
// after Open, as it does for an older database), written once into the
// system's temporary folder and reused. The build's duration is logged.
func CachedSummarised(tb testing.TB, r Realistic) string {
	tb.Helper()
	raw := CachedRealistic(tb, r)
	path := raw[:len(raw)-len(".db")] + "-summaries6.db"
	if _, err := os.Stat(path); err == nil {
		summarise(tb, path)
		return path
	}
	tmp := path + ".part"
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(tmp + suffix)
	}
	CopyFile(tb, raw, tmp)
	summarise(tb, tmp)
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
	return path
}

// summarise opens the database at path with its writer until its summary
// tables are built, unless they are.
func summarise(tb testing.TB, path string) {
	tb.Helper()
	check, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		tb.Fatal(err)
	}
	done := summarisedAll(tb, check)
	check.Close()
	if done {
		return
	}
	start := time.Now()
	db := shard.New(path, shard.Options{Synchronous: "NORMAL"}, nil)
	if err := db.Open(); err != nil {
		tb.Fatal(err)
	}
	for !done {
		time.Sleep(100 * time.Millisecond)
		check, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
		if err != nil {
			tb.Fatal(err)
		}
		done = summarisedAll(tb, check)
		check.Close()
	}
	// Closing checkpoints the whole write-ahead log into the file: no
	// reader is left to hold it back.
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("summaries of %s built in %v", filepath.Base(path), time.Since(start))
}

// CopyFile copies the file from to the path to, failing tb on an error.
func CopyFile(tb testing.TB, from, to string) {
	tb.Helper()
	src, err := os.Open(from)
	if err != nil {
		tb.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		tb.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		tb.Fatal(err)
	}
}

// CachedRegistered returns the path of a copy of CachedSummarised(r)'s
// database on which the writer has registered the value field field (JSON
// path path) of application's events of eventType and filled it in
// (shard's field registry), written once into the system's temporary
// folder and reused. The backfill's duration is logged.
func CachedRegistered(tb testing.TB, r Realistic, application, eventType, field, path string) string {
	tb.Helper()
	sum := CachedSummarised(tb, r)
	out := sum[:len(sum)-len(".db")] + "-registry.db"
	if _, err := os.Stat(out); err == nil {
		return out
	}
	tmp := out + ".part"
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(tmp + suffix)
	}
	CopyFile(tb, sum, tmp)
	start := time.Now()
	db := shard.New(tmp, shard.Options{Synchronous: "NORMAL"}, nil)
	if err := db.Open(); err != nil {
		tb.Fatal(err)
	}
	if err := db.RegisterValueField(context.Background(), application, eventType, field, path); err != nil {
		tb.Fatal(err)
	}
	if err := db.Summarize(context.Background()); err != nil {
		tb.Fatal(err)
	}
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("value field %s of %s filled in on %s in %v", field, eventType, filepath.Base(out), time.Since(start))
	if err := os.Rename(tmp, out); err != nil {
		tb.Fatal(err)
	}
	return out
}
