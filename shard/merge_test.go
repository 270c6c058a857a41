package shard_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
)

// rowsOf returns "id session_id" of every row of table, in id order.
func rowsOf(tb testing.TB, db *sql.DB, table string) []string {
	tb.Helper()
	rs, err := db.Query("SELECT id, session_id FROM " + table + " ORDER BY id")
	if err != nil {
		tb.Fatal(err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var id int
		var s string
		if err := rs.Scan(&id, &s); err != nil {
			tb.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d %s", id, s))
	}
	return out
}

// stagedRows is the number of events staged: committed, not yet merged.
func stagedRows(tb testing.TB, db *sql.DB) int {
	tb.Helper()
	var n int
	if err := db.QueryRow(shard.StagedSQL).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func countRows(tb testing.TB, db *sql.DB, table string) int {
	tb.Helper()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// TestDB_Merge: events wait in the staging table with the ids they keep,
// and the merge moves them into event in arrival order, each exactly once.
func TestDB_Merge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	w := openDB(t, path, shard.Options{MergeInterval: time.Hour})
	for i := range 10 {
		if err := w.Write(i, []shard.Event{testEvent(2 * i), testEvent(2*i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	db := sqlDB(t, path)
	if n := countRows(t, db, "event"); n != 0 {
		t.Errorf("event holds %d rows before the merge, want 0", n)
	}
	staged := rowsOf(t, db, shard.StagingTable)
	view := rowsOf(t, db, shard.ViewAll)
	var want []string
	for i := range 20 {
		want = append(want, fmt.Sprintf("%d session-%d", i+1, i))
	}
	if fmt.Sprint(staged) != fmt.Sprint(want) || fmt.Sprint(view) != fmt.Sprint(want) {
		t.Fatalf("staged:\ngot  %v\nview %v\nwant %v", staged, view, want)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := rowsOf(t, db, "event"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after close:\ngot  %v\nwant %v", got, want)
	}
	if n := stagedRows(t, db); n != 0 {
		t.Errorf("%d rows staged after close, want 0", n)
	}
	if st := w.Stats(); st.EventsMerged != 20 || st.Merges != 1 {
		t.Errorf("stats: got %+v", st)
	}
}

// TestDB_Merge_Leftover: rows a crashed run left staged in the ring are
// merged when the database is opened, before anything new is written, and
// keep their ids; new events come after them. The stale copies of merged
// events the ring holds stay out of event and event_all.
func TestDB_Merge_Leftover(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	w := openDB(t, path, shard.Options{MergeInterval: time.Hour})
	if err := w.Write(0, []shard.Event{testEvent(1), testEvent(2)}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	db := sqlDB(t, path)
	// What a kill -9 between a group commit and its merge leaves: rows in
	// event (and their stale copies in the ring), and rows staged in the
	// ring with the ids after them, each at its slot.
	if _, err := db.Exec(`INSERT INTO event_ring (slot, event_type, application, version, platform, user_id, session_id, value, id, time)
		VALUES (3, 't', 'a', 'v', 'p', 'u', 'left-1', '{}', 3, '2026-11-30 01:00:00.000000'),
		       (4, 't', 'a', 'v', 'p', 'u', 'left-2', '{}', 4, '2026-11-30 01:00:00.000000')`); err != nil {
		t.Fatal(err)
	}
	want := []string{"1 session-1", "2 session-2", "3 left-1", "4 left-2"}
	if got := rowsOf(t, db, shard.ViewAll); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("event_all before open:\ngot  %v\nwant %v", got, want)
	}
	w = openDB(t, path, shard.Options{MergeInterval: time.Hour})
	if got := rowsOf(t, db, "event"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after open:\ngot  %v\nwant %v", got, want)
	}
	if err := w.Write(0, []shard.Event{testEvent(5)}); err != nil {
		t.Fatal(err)
	}
	want = append(want, "5 session-5")
	if got := rowsOf(t, db, shard.ViewAll); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("event_all after a write:\ngot  %v\nwant %v", got, want)
	}
	w.Close()
	if got := rowsOf(t, db, "event"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after a write:\ngot  %v\nwant %v", got, want)
	}
	if n := countRows(t, db, shard.StagingTable); n != 5 {
		t.Errorf("the ring holds %d rows, want 5 stale copies", n)
	}
}

// TestDB_Merge_UpgradeStaging: a database of the version before the ring,
// with rows in its staging table (event_staging, rowid = id) and the view
// over it, is upgraded at Open: the staged rows move into event with their
// ids, the old table goes, event_all reads the ring, and new events follow.
func TestDB_Merge_UpgradeStaging(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	db := sqlDB(t, path)
	if _, err := db.Exec(oldSchema + `;
CREATE TABLE event_staging (event_type VARCHAR NOT NULL, application VARCHAR NOT NULL, version VARCHAR NOT NULL,
	platform VARCHAR NOT NULL, user_id VARCHAR NOT NULL, session_id VARCHAR NOT NULL, value JSON NOT NULL,
	id INTEGER NOT NULL, time DATETIME NOT NULL, PRIMARY KEY (id));
CREATE VIEW event_all AS
	SELECT event_type, application, version, platform, user_id, session_id, value, id, time FROM event
	UNION ALL
	SELECT event_type, application, version, platform, user_id, session_id, value, id, time FROM event_staging;
INSERT INTO event (event_type, application, version, platform, user_id, session_id, value, id, time)
	VALUES ('t', 'a', 'v', 'p', 'u', 'merged-1', '{}', 1, '2026-11-30 01:00:00.000000');
INSERT INTO event_staging (event_type, application, version, platform, user_id, session_id, value, id, time)
	VALUES ('t', 'a', 'v', 'p', 'u', 'staged-2', '{}', 2, '2026-11-30 01:00:00.000000'),
	       ('t', 'a', 'v', 'p', 'u', 'staged-3', '{}', 3, '2026-11-30 01:00:00.000000');`); err != nil {
		t.Fatal(err)
	}
	w := openDB(t, path, shard.Options{MergeInterval: time.Hour})
	want := []string{"1 merged-1", "2 staged-2", "3 staged-3"}
	if got := rowsOf(t, db, "event"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("event after open:\ngot  %v\nwant %v", got, want)
	}
	var old int
	db.QueryRow("SELECT count(*) FROM sqlite_schema WHERE name = 'event_staging'").Scan(&old)
	if old != 0 {
		t.Errorf("event_staging is still there")
	}
	if err := w.Write(0, []shard.Event{testEvent(4)}); err != nil {
		t.Fatal(err)
	}
	want = append(want, "4 session-4")
	if got := rowsOf(t, db, shard.ViewAll); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("event_all after a write:\ngot  %v\nwant %v", got, want)
	}
	if n := stagedRows(t, db); n != 1 {
		t.Errorf("%d rows staged, want 1", n)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := rowsOf(t, db, "event"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("event after close:\ngot  %v\nwant %v", got, want)
	}
}

// TestDB_Merge_Ring: many more events than the ring has slots, merged
// because the ring was full, which makes it grow (it filled within the
// merge interval), up to a group larger than the ring: every event is in
// event_all exactly once throughout, with the ids of its arrival, and in
// event after Close; the ring never holds more rows than its slots.
func TestDB_Merge_Ring(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	w := openDB(t, path, shard.Options{MergeInterval: time.Hour, MergeRows: 1 << 30, SummaryInterval: -1})
	db := sqlDB(t, path)
	written := 0
	write := func(n int) {
		t.Helper()
		evs := make([]shard.Event, n)
		for i := range evs {
			evs[i] = testEvent(written + i)
		}
		if err := w.Write(0, evs); err != nil {
			t.Fatal(err)
		}
		written += n
	}
	check := func(where string) {
		t.Helper()
		var n, distinct, lo, hi int
		if err := db.QueryRow("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM "+shard.ViewAll).Scan(&n, &distinct, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		if n != written || distinct != written || lo != 1 || hi != written {
			t.Fatalf("%s: event_all has %d rows, %d ids, %d to %d; want %d, 1 to %d", where, n, distinct, lo, hi, written, written)
		}
		var bad int
		db.QueryRow("SELECT count(*) FROM " + shard.ViewAll + " WHERE session_id != 'session-' || (id - 1)").Scan(&bad)
		if bad != 0 {
			t.Fatalf("%s: %d rows whose id is not their arrival's", where, bad)
		}
	}
	ring := func(want int) {
		t.Helper()
		var slots, rows int
		db.QueryRow("SELECT slots, (SELECT count(*) FROM "+shard.StagingTable+") FROM "+shard.StagingMeta).Scan(&slots, &rows)
		if slots != want || rows > slots {
			t.Errorf("the ring has %d slots and %d rows, want %d slots and at most as many rows", slots, rows, want)
		}
	}
	for range 40 {
		write(1000)
	}
	check("after 40,000 events in groups of 1,000")
	if w.Stats().Merges < 1 {
		t.Errorf("%d merges, want at least 1 (the ring was full)", w.Stats().Merges)
	}
	ring(2 * shard.DefaultRingSlots)
	if err := w.Merge(context.Background()); err != nil {
		t.Fatal(err)
	}
	write(3)
	check("after a merge and 3 events")
	write(2*shard.DefaultRingSlots + 100)
	check("after a group larger than the ring")
	ring(4 * shard.DefaultRingSlots)
	write(500)
	check("after 500 more")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, "event"); n != written {
		t.Errorf("event holds %d rows after close, want %d", n, written)
	}
	check("after close")
}

// TestDB_Merge_OldDatabase: a database written before the staging table
// existed (the event table and its indexes alone, with rows) gets the table
// on the fly, and its new events follow the old ids.
func TestDB_Merge_OldDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	old := sqlDB(t, path)
	if _, err := old.Exec(oldSchema); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(`INSERT INTO event (event_type, application, version, platform, user_id, session_id, value, time)
		VALUES ('t', 'a', 'v', 'p', 'u', 'old-1', '{}', '2026-11-01 00:00:00.000000'),
		       ('t', 'a', 'v', 'p', 'u', 'old-2', '{}', '2026-11-01 00:00:00.000000')`); err != nil {
		t.Fatal(err)
	}
	old.Close()
	w := openDB(t, path, shard.Options{})
	if err := w.Write(0, []shard.Event{testEvent(3), testEvent(4)}); err != nil {
		t.Fatal(err)
	}
	db := sqlDB(t, path)
	want := []string{"1 old-1", "2 old-2", "3 session-3", "4 session-4"}
	if got := rowsOf(t, db, shard.ViewAll); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("view while running:\ngot  %v\nwant %v", got, want)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := rowsOf(t, db, "event"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("event after close:\ngot  %v\nwant %v", got, want)
	}
}

// oldSchema is the schema as gocolytics created it before the staging
// table, and as Pycolytics creates it.
const oldSchema = `
CREATE TABLE event (event_type VARCHAR NOT NULL, application VARCHAR NOT NULL, version VARCHAR NOT NULL,
	platform VARCHAR NOT NULL, user_id VARCHAR NOT NULL, session_id VARCHAR NOT NULL, value JSON NOT NULL,
	id INTEGER NOT NULL, time DATETIME NOT NULL, PRIMARY KEY (id));
CREATE INDEX ix_event_event_type ON event (event_type);
CREATE INDEX ix_event_application ON event (application);
CREATE INDEX ix_event_version ON event (version);
CREATE INDEX ix_event_platform ON event (platform);
CREATE INDEX ix_event_user_id ON event (user_id);`

// TestDB_Merge_Visibility: under a steady load, every acknowledged event is
// in the event table within the merge interval and some slack (the merge
// runs between group commits, so it waits at most for one of them).
func TestDB_Merge_Visibility(t *testing.T) {
	const interval = 200 * time.Millisecond
	const bound = interval + 2*time.Second
	path := filepath.Join(t.TempDir(), "events.db")
	w := openDB(t, path, shard.Options{MergeInterval: interval, Shards: 4})
	db := sqlDB(t, path)
	var stop atomic.Bool
	var next atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				n := int(next.Add(1))
				evs := make([]shard.Event, 1+n%5)
				for i := range evs {
					evs[i] = testEvent(n)
				}
				if err := w.Write(g, evs); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	// Every 100 ms: the ids acknowledged so far must be in event by the
	// bound. Acknowledged rows are found through the view.
	type probe struct {
		maxID int64
		at    time.Time
	}
	var probes []probe
	deadline := time.Now().Add(3 * time.Second)
	worst := time.Duration(0)
	for time.Now().Before(deadline) || len(probes) > 0 {
		if time.Now().Before(deadline) {
			var id sql.NullInt64
			db.QueryRow("SELECT max(id) FROM " + shard.StagingTable).Scan(&id)
			if id.Valid {
				probes = append(probes, probe{id.Int64, time.Now()})
			}
		}
		var inEvent sql.NullInt64
		if err := db.QueryRow("SELECT max(id) FROM event").Scan(&inEvent); err != nil {
			t.Fatal(err)
		}
		for len(probes) > 0 && inEvent.Int64 >= probes[0].maxID {
			worst = max(worst, time.Since(probes[0].at))
			probes = probes[1:]
		}
		if len(probes) > 0 && time.Since(probes[0].at) > bound {
			t.Fatalf("id %d staged at %v is not in event after %v", probes[0].maxID, probes[0].at.Format(time.StampMilli), bound)
		}
		if !time.Now().Before(deadline) && stop.CompareAndSwap(false, true) {
			wg.Wait()
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if w.Stats().Merges < 2 {
		t.Errorf("merges: got %d, want several", w.Stats().Merges)
	}
	t.Logf("%d events, %d merges; longest wait seen for a staged id to reach event: %v", w.Stats().EventsStored, w.Stats().Merges, worst)
}

// TestDB_Merge_Reader: a reader holding a snapshot open while the load goes
// on and merges run sees the same rows throughout; the writes are not held
// up, and afterwards the reader sees everything. 10 s with
// GOCOLYTICS_FAULT_LONG=1, 2 s otherwise.
func TestDB_Merge_Reader(t *testing.T) {
	hold := 2 * time.Second
	if os.Getenv("GOCOLYTICS_FAULT_LONG") == "1" {
		hold = 10 * time.Second
	}
	path := filepath.Join(t.TempDir(), "events.db")
	w := openDB(t, path, shard.Options{MergeInterval: 100 * time.Millisecond})
	for i := range 100 {
		if err := w.Write(0, []shard.Event{testEvent(i)}); err != nil {
			t.Fatal(err)
		}
	}
	db := sqlDB(t, path)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	snapshot := func() (int, int) {
		var a, b int
		if err := tx.QueryRow("SELECT (SELECT count(*) FROM event), (SELECT count(*) FROM "+shard.ViewAll+")").Scan(&a, &b); err != nil {
			t.Fatal(err)
		}
		return a, b
	}
	inEvent, inAll := snapshot()
	if inAll != 100 {
		t.Fatalf("snapshot sees %d events, want 100", inAll)
	}
	start, merges, written := time.Now(), w.Stats().Merges, 100
	for time.Since(start) < hold {
		if err := w.Write(written, []shard.Event{testEvent(written)}); err != nil {
			t.Fatalf("write while a reader holds a snapshot: %v", err)
		}
		written++
		if written%50 == 0 {
			if a, b := snapshot(); a != inEvent || b != inAll {
				t.Fatalf("the snapshot changed: %d/%d rows, then %d/%d", inEvent, inAll, a, b)
			}
		}
	}
	if m := w.Stats().Merges - merges; m < 2 {
		t.Errorf("%d merges while the reader held its snapshot, want several", m)
	}
	tx.Rollback()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, "event"); n != written {
		t.Errorf("event holds %d rows, want %d", n, written)
	}
	t.Logf("%d events written in %v while a reader held its snapshot", written-100, hold)
}

// TestDB_Merge_Bounded: a merge moves at most MergeMaxRows events, and the
// rest follows in further merges, in order.
func TestDB_Merge_Bounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	w := openDB(t, path, shard.Options{MergeInterval: time.Hour, MergeMaxRows: 7})
	evs := make([]shard.Event, 30)
	for i := range evs {
		evs[i] = testEvent(i)
	}
	if err := w.Write(0, evs); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Merges != 5 || st.EventsMerged != 30 {
		t.Errorf("stats: got %d merges of %d events, want 5 of 30", st.Merges, st.EventsMerged)
	}
	got := rowsOf(t, sqlDB(t, path), "event")
	if len(got) != 30 || got[0] != "1 session-0" || got[29] != "30 session-29" {
		t.Errorf("got %v", got)
	}
}

// TestDB_Merge_Budget: with a MergeBudget no merge can keep to, the chunks
// halve from the first one (10,000 events) down to the floor (5,000), the
// rest following in further merges, in order; with the budget off one merge
// moves everything.
func TestDB_Merge_Budget(t *testing.T) {
	for _, tc := range []struct {
		name   string
		budget time.Duration
		merges uint64
	}{
		// 10,000 + 5,000 + 5,000.
		{"tiny", time.Nanosecond, 3},
		{"off", -1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.db")
			w := openDB(t, path, shard.Options{MergeInterval: 20 * time.Millisecond, MergeBudget: tc.budget})
			evs := make([]shard.Event, 20000)
			for i := range evs {
				evs[i] = testEvent(i)
			}
			if err := w.Write(0, evs); err != nil {
				t.Fatal(err)
			}
			db := sqlDB(t, path)
			deadline := time.Now().Add(20 * time.Second)
			for w.Stats().EventsMerged < 20000 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if st := w.Stats(); st.Merges != tc.merges || st.EventsMerged != 20000 {
				t.Errorf("stats: got %d merges of %d events, want %d of 20000", st.Merges, st.EventsMerged, tc.merges)
			}
			got := rowsOf(t, db, "event")
			if len(got) != 20000 || got[0] != "1 session-0" || got[19999] != "20000 session-19999" {
				t.Fatalf("event holds %d rows, want 20000 with ids 1 to 20000 in order", len(got))
			}
			if n := stagedRows(t, db); n != 0 {
				t.Errorf("%d rows staged, want 0", n)
			}
		})
	}
}

// TestDB_Merge_IdsTaken: when another program has inserted into event
// with an id the writer gave a staged event, the merge gives the staged
// events new ids, in arrival order, each exactly once, and moves the
// watermark past them, so that a restart merges nothing again.
func TestDB_Merge_IdsTaken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	w := openDB(t, path, shard.Options{MergeInterval: time.Hour})
	for i := range 5 {
		if err := w.Write(0, []shard.Event{testEvent(i)}); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if err := w.Merge(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	db := sqlDB(t, path)
	if _, err := db.Exec(`INSERT INTO event (event_type, application, version, platform, user_id, session_id, value, id, time)
		VALUES ('t', 'a', 'v', 'p', 'u', 'foreign', '{}', 4, '2026-11-30 01:00:00.000000')`); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{"1 session-0", "2 session-1", "4 foreign", "5 session-2", "6 session-3", "7 session-4"}
	if got := rowsOf(t, db, "event"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("event:\ngot  %v\nwant %v", got, want)
	}
	w = openDB(t, path, shard.Options{MergeInterval: time.Hour})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := rowsOf(t, db, shard.ViewAll); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("event_all after a restart:\ngot  %v\nwant %v", got, want)
	}
}
