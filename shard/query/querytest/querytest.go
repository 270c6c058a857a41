// Package querytest holds what the tests of the read side share: loading a
// dataset of events with given times into a real database through the
// writer, and opening it read-only.
package querytest

import (
	"bufio"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // the read-only handle's driver

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/query"
)

// KnownDataset is the path of the dataset with known answers
// (shard/query/testdata/known/events.tsv).
func KnownDataset() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", "known", "events.tsv")
}

// ReadTSV reads a dataset: one event a line, tab-separated time (UTC, as
// "2006-01-02 15:04:05"), application, user_id, session_id, event_type,
// version, platform and value; lines starting with # are comments.
func ReadTSV(tb testing.TB, path string) []shard.Event {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []shard.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c := strings.Split(line, "\t")
		if len(c) != 8 {
			tb.Fatalf("%s: %d columns in %q", path, len(c), line)
		}
		t, err := time.Parse("2006-01-02 15:04:05", c[0])
		if err != nil {
			tb.Fatalf("%s: %v", path, err)
		}
		out = append(out, shard.Event{Time: t, Application: c[1], UserID: c[2], SessionID: c[3], EventType: c[4], Version: c[5], Platform: c[6], Value: c[7]})
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// Write stores events in the database at path through the writer, in
// order, summarises them all and closes it. The summary passes are of
// writeSummaryRows rows, so that a day's groups come in rows of several
// passes (folded or not) as on a server, which the readers must add up;
// finished days are folded as a server with the default SummaryRows
// would (FoldRows).
func Write(tb testing.TB, path string, events []shard.Event) {
	tb.Helper()
	db := shard.New(path, shard.Options{Synchronous: "NORMAL", SummaryRows: writeSummaryRows, FoldRows: 2 * shard.DefaultSummaryRows}, nil)
	if err := db.Open(); err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	for len(events) > 0 {
		n := min(len(events), 5000)
		if err := db.Write(0, events[:n]); err != nil {
			tb.Fatal(err)
		}
		events = events[n:]
	}
	if err := db.Merge(context.Background()); err != nil {
		tb.Fatal(err)
	}
	if err := db.Summarize(context.Background()); err != nil {
		tb.Fatal(err)
	}
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
}

// writeSummaryRows is the size of Write's summary passes.
const writeSummaryRows = 400

// OpenReadOnly opens the database at path read-only, with the connections
// of the server's read-only pool (query.OpenDB: its DSN and pragmas),
// closed when the test ends.
func OpenReadOnly(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	db := query.OpenDB(path, query.Options{})
	tb.Cleanup(func() { db.Close() })
	return db
}

// OpenReader opens the read-only pool (query.Open) on the database at
// path, closed when the test ends.
func OpenReader(tb testing.TB, path string) *query.Reader {
	tb.Helper()
	r, err := query.Open(path, query.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// Known writes the dataset with known answers into a new database and
// returns its path.
func Known(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "known.db")
	Write(tb, path, ReadTSV(tb, KnownDataset()))
	return path
}

// Want returns the text of a file of expected answers beside the known
// dataset (shard/query/testdata/known/NAME).
func Want(tb testing.TB, name string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(KnownDataset()), name))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}
