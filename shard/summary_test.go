package shard_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

// randomEvents are n events of a few applications, users, sessions, types,
// versions and platforms at random times over 20 days, in random order.
func randomEvents(rng *rand.Rand, n int) []shard.Event {
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	out := make([]shard.Event, n)
	for i := range out {
		u := rng.IntN(30)
		out[i] = shard.Event{
			Time:        start.Add(time.Duration(rng.IntN(20*24*3600)) * time.Second),
			Application: []string{"A", "B"}[rng.IntN(2)],
			UserID:      fmt.Sprintf("u%d", u),
			SessionID:   fmt.Sprintf("s%d", rng.IntN(80)),
			EventType:   []string{"start", "level", "end", "forget"}[rng.IntN(4)],
			Version:     []string{"1", "2"}[rng.IntN(2)],
			Platform:    []string{"Linux", "Web"}[u%2],
			// Not drawn from rng: the tests' times and users stay those
			// they were written for.
			Value: randomValues[i%len(randomValues)],
		}
		if i%3 == 0 {
			out[i].Value = fmt.Sprintf(`{"score":%d,"stats":{"time":%d.5},"n":-0}`, i*7%100-20, i*13%100)
		}
	}
	return out
}

// randomValues are values of every kind: numbers as JSON writes them, no
// numbers, invalid JSON, duplicate keys, a key written with escapes,
// arrays (the summaries must not fail on any of them).
var randomValues = []string{`{}`, `{"score":1e2}`, `{"score":"7"}`, `not json`, `{"score":1,"score":2}`, `{"sc\u006fre":3}`,
	`{"score":1e99999}`, `{"a.b":1,"a":{"b":2}}`, `{"arr":[1,{"score":4}]}`, `[{"score":5}]`}

// registerField registers a value field and waits for the writer.
func registerField(t *testing.T, db *shard.DB, application, eventType, field, path string) {
	t.Helper()
	if err := db.RegisterValueField(context.Background(), application, eventType, field, path); err != nil {
		t.Fatalf("register %s %s %s: %v", application, eventType, field, err)
	}
}

// checkFieldsBuilt fails t unless n value fields are registered, each
// complete (at the watermark) and with numbers in stats_value_num, so that
// CheckSummaries had them to check.
func checkFieldsBuilt(t *testing.T, path string, n int) {
	t.Helper()
	var complete, withNumbers int
	if err := sqlDB(t, path).QueryRow(`SELECT count(*), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM stats_value_num v
WHERE (v.application, v.event_type, v.field) = (f.application, f.event_type, f.field) AND v.numbers IS NOT NULL))
FROM stats_value_field f JOIN stats_state s ON s.built_id = f.built_id`).Scan(&complete, &withNumbers); err != nil {
		t.Fatal(err)
	}
	if complete != n || withNumbers != n {
		t.Errorf("value fields complete %d, with numbers %d; want %d", complete, withNumbers, n)
	}
}

// TestSummaries_EqualRaw writes random events through the writer (merged
// in small chunks, summarised every 700 rows or so, so that the watermark
// sits in the middle of the rows), with a value field registered at the
// start and one filled in later, then erases users (with and without an
// application and through ERASE_EVENT_TYPE) and deletes old rows
// (retention): after each step the summary tables must equal what the raw
// rows up to their watermark give, and after a last pass, every row.
func TestSummaries_EqualRaw(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 3))
	path := filepath.Join(t.TempDir(), "events.db")
	db := openDB(t, path, shard.Options{MergeInterval: time.Hour, MergeMaxRows: 300, EraseEventType: "forget", SummaryRows: 700})
	events := randomEvents(rng, 3000)
	ctx := context.Background()
	registerField(t, db, "A", "level", "score", `$."score"`)
	for i := 0; i < len(events); i += 100 {
		if err := db.Write(i, events[i:i+100]); err != nil {
			t.Fatal(err)
		}
		if i == 1500 {
			registerField(t, db, "B", "end", "stats.time", `$."stats"."time"`)
		}
		if i%700 == 0 {
			if err := db.Merge(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := db.Merge(ctx); err != nil {
		t.Fatal(err)
	}
	shardtest.CheckSummariesPart(t, path)
	var built int
	if err := sqlDB(t, path).QueryRow("SELECT built_id FROM stats_state").Scan(&built); err != nil || built == 0 {
		t.Errorf("watermark after 3,000 rows with passes every 700: %d, %v; want above 0", built, err)
	}

	if n, err := db.Erase(ctx, "u3", ""); err != nil || n == 0 {
		t.Fatalf("erase u3: %d, %v", n, err)
	}
	if n, err := db.Erase(ctx, "u4", "A"); err != nil || n == 0 {
		t.Fatalf("erase u4 of A: %d, %v", n, err)
	}
	shardtest.CheckSummariesPart(t, path)
	if err := db.Summarize(ctx); err != nil {
		t.Fatal(err)
	}
	shardtest.CheckSummaries(t, path)

	// Rows up to the middle of a day (as far as retention's walk in id
	// order goes through rows in random time order): groups and users keep
	// the rest.
	if n, err := db.Prune(ctx, time.Date(2026, 10, 6, 13, 0, 0, 0, time.UTC)); err != nil || n == 0 {
		t.Fatalf("prune: %d, %v", n, err)
	}
	if err := db.Merge(ctx); err != nil {
		t.Fatal(err)
	}
	shardtest.CheckSummariesPart(t, path)
	if err := db.Summarize(ctx); err != nil {
		t.Fatal(err)
	}
	shardtest.CheckSummaries(t, path)
	checkFieldsBuilt(t, path, 2)
}

// TestSummaries_Backfill opens databases whose rows the summaries never
// saw: written with summaries off, and with summary tables of the layout
// before the watermark. The writer builds them in the background while
// taking events (with merging on and off).
func TestSummaries_Backfill(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 3))
	path := filepath.Join(t.TempDir(), "events.db")
	db := shard.New(path, shard.Options{MergeInterval: -1, SummaryInterval: -1}, quietLogger())
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	if err := db.Write(0, randomEvents(rng, 5000)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := sqlDB(t, path).QueryRow("SELECT count(*) FROM sqlite_schema WHERE name LIKE 'stats_%'").Scan(&n); err != nil || n != 0 {
		t.Errorf("summary tables with summaries off: %d, %v; want 0", n, err)
	}

	for _, merge := range []time.Duration{0, -1} {
		db = shard.New(path, shard.Options{MergeInterval: merge, SummaryInterval: 20 * time.Millisecond}, quietLogger())
		if err := db.Open(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			if err := db.Write(i, randomEvents(rng, 50)); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Merge(context.Background()); err != nil {
			t.Fatal(err)
		}
		shardtest.WaitSummaries(t, path)
		shardtest.CheckSummaries(t, path)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		// The next round finds tables of an old layout: before the
		// watermark, then version 2 (one row per group, no passes; its
		// state row claims every row and its counts are wrong) with a
		// stats_value as layouts 4 and 5 (not taken) left it.
		old := []string{"DROP TABLE stats_state", "CREATE TABLE stats_state (id INTEGER PRIMARY KEY, start_id INTEGER, built_id INTEGER, last_id INTEGER)",
			"INSERT INTO stats_state VALUES (1, 999999, 999999, 999999)", "DROP TABLE stats_day",
			"CREATE TABLE stats_day (application, day, min_id, max_id, PRIMARY KEY (application, day))"}
		if merge < 0 {
			old = []string{"DROP TABLE stats_state", "DROP TABLE stats_day", "DROP TABLE stats_activity", "DROP TABLE stats_pass",
				"CREATE TABLE stats_state (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, built_id INTEGER NOT NULL)",
				"INSERT INTO stats_state VALUES (1, 2, 999999)",
				"CREATE TABLE stats_value (application, day, numbers)", "INSERT INTO stats_value VALUES ('a', 'b', '1')",
				`CREATE TABLE stats_activity (application TEXT NOT NULL, day TEXT NOT NULL, session_id TEXT NOT NULL, user_id TEXT NOT NULL,
	event_type TEXT NOT NULL, version TEXT NOT NULL, platform TEXT NOT NULL, events INTEGER NOT NULL, first_time TEXT NOT NULL, last_time TEXT NOT NULL,
	PRIMARY KEY (application, day, session_id, user_id, event_type, version, platform)) WITHOUT ROWID`,
				"INSERT OR IGNORE INTO stats_activity SELECT application, substr(time, 1, 10), session_id, user_id, event_type, version, platform, 7, time, time FROM event",
				`CREATE TABLE stats_day (application TEXT NOT NULL, day TEXT NOT NULL, min_id INTEGER NOT NULL, max_id INTEGER NOT NULL, events INTEGER NOT NULL,
	PRIMARY KEY (application, day)) WITHOUT ROWID`}
		}
		for _, q := range old {
			if _, err := sqlDB(t, path).Exec(q); err != nil {
				t.Fatal(q, err)
			}
		}
	}
	openDB(t, path, shard.Options{SummaryInterval: 20 * time.Millisecond})
	shardtest.WaitSummaries(t, path)
	shardtest.CheckSummaries(t, path)
	if err := sqlDB(t, path).QueryRow("SELECT count(*) FROM sqlite_schema WHERE name = 'stats_value'").Scan(&n); err != nil || n != 0 {
		t.Errorf("stats_value of an older layout left: %d, %v; want it dropped", n, err)
	}
}

// TestSummaries_StateGone removes the summaries' state row while the
// writer runs, as another program might: the next pass builds the tables
// again from the first row, once (it used to queue itself for ever).
func TestSummaries_StateGone(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 3))
	path := filepath.Join(t.TempDir(), "events.db")
	db := openDB(t, path, shard.Options{})
	ctx := context.Background()
	registerField(t, db, "B", "level", "score", `$."score"`)
	if err := db.Write(0, randomEvents(rng, 2000)); err != nil {
		t.Fatal(err)
	}
	if err := db.Merge(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Summarize(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlDB(t, path).Exec("DELETE FROM stats_state"); err != nil {
		t.Fatal(err)
	}
	// Rows deleted while nobody keeps the tables: the rebuild must not
	// count them.
	if _, err := sqlDB(t, path).Exec("DELETE FROM event WHERE user_id = 'u1'"); err != nil {
		t.Fatal(err)
	}
	if err := db.Write(0, randomEvents(rng, 100)); err != nil {
		t.Fatal(err)
	}
	if err := db.Merge(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Summarize(ctx); err != nil {
		t.Fatal(err)
	}
	shardtest.CheckSummaries(t, path)
	// Nothing left to do: another pass changes nothing and returns.
	if err := db.Summarize(ctx); err != nil {
		t.Fatal(err)
	}
	shardtest.CheckSummaries(t, path)
	checkFieldsBuilt(t, path, 1)
}

// TestSummaries_EraseDuringBuild erases a player while the summaries of an
// older database are being built (in passes of 300 rows here): the erasure
// takes turns with the passes instead of waiting for the whole build, and
// the tables end equal to the rows left.
func TestSummaries_EraseDuringBuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 3))
	path := filepath.Join(t.TempDir(), "events.db")
	db := shard.New(path, shard.Options{SummaryInterval: -1, Synchronous: "NORMAL"}, quietLogger())
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if err := db.Write(i, randomEvents(rng, 5000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, path, shard.Options{SummaryRows: 300, Synchronous: "NORMAL"})
	ctx := context.Background()
	registerField(t, db, "A", "end", "score", `$."score"`)
	if n, err := db.Erase(ctx, "u5", ""); err != nil || n == 0 {
		t.Fatalf("erase u5: %d, %v", n, err)
	}
	var built, top int64
	if err := sqlDB(t, path).QueryRow("SELECT built_id, (SELECT max(id) FROM event) FROM stats_state").Scan(&built, &top); err != nil {
		t.Fatal(err)
	}
	if built >= top {
		t.Errorf("the erasure ended after the build (watermark %d, newest row %d): it waited for it", built, top)
	}
	shardtest.CheckSummariesPart(t, path)
	if err := db.Summarize(ctx); err != nil {
		t.Fatal(err)
	}
	shardtest.CheckSummaries(t, path)
	var left int
	if err := sqlDB(t, path).QueryRow("SELECT count(*) FROM stats_activity WHERE user_id = 'u5'").Scan(&left); err != nil || left != 0 {
		t.Errorf("summary rows of the erased player: %d, %v; want 0", left, err)
	}
	checkFieldsBuilt(t, path, 1)
}

// TestSummaries_Idle: once the writer has had no group commit for a while,
// a tail of 10,000 rows or more is summarised at once, long before
// SummaryInterval; a smaller one waits for the interval.
func TestSummaries_Idle(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 1))
	for _, tc := range []struct {
		events int
		built  bool
	}{{12000, true}, {3000, false}} {
		t.Run(fmt.Sprint(tc.events), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.db")
			db := openDB(t, path, shard.Options{MergeInterval: 20 * time.Millisecond, SummaryInterval: time.Hour})
			for i := 0; i < tc.events; i += 1000 {
				if err := db.Write(i, randomEvents(rng, 1000)); err != nil {
					t.Fatal(err)
				}
			}
			if !tc.built {
				time.Sleep(4 * time.Second)
				var built, top int64
				if err := sqlDB(t, path).QueryRow("SELECT built_id, (SELECT max(id) FROM event) FROM stats_state").Scan(&built, &top); err != nil || built != 0 || top != int64(tc.events) {
					t.Errorf("built %d, newest row %d, %v; want 0 and %d (nothing summarised before SUMMARY_INTERVAL)", built, top, err, tc.events)
				}
				return
			}
			shardtest.WaitSummaries(t, path)
			shardtest.CheckSummaries(t, path)
		})
	}
}

// TestSummaries_FoldBounded: a finished day with more pass rows than
// FoldRows stays unfolded (pending 2, its passes' rows kept) while smaller
// days are folded, several a pass as long as they fit; the tables stay
// equal to the raw rows throughout, also after a late row of the large day
// (counted again, left unfolded again) and an erasure in it.
func TestSummaries_FoldBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	db := openDB(t, path, shard.Options{MergeInterval: -1, SummaryInterval: time.Hour, SummaryRows: 50, FoldRows: 100})
	ctx := context.Background()
	registerField(t, db, "My Game", "level_complete", "i", `$."i"`)
	day := func(d, i int) time.Time {
		return time.Date(2026, 11, d, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	}
	// Day 10: 200 groups of one event each (200 pass rows); days 11 and
	// 12: 30 events in 3 groups (several pass rows each: passes of 50).
	var events []shard.Event
	for i := range 200 {
		e := testEvent(i)
		e.SessionID, e.UserID, e.Time = fmt.Sprintf("big-%d", i), fmt.Sprintf("u%d", i%7), day(10, i)
		events = append(events, e)
	}
	for _, d := range []int{11, 12} {
		for i := range 30 {
			e := testEvent(i)
			e.SessionID, e.Time = fmt.Sprintf("small-%d", i%3), day(d, i)
			events = append(events, e)
		}
	}
	write := func(evs ...shard.Event) {
		t.Helper()
		if err := db.Write(0, evs); err != nil {
			t.Fatal(err)
		}
		if err := db.Summarize(ctx); err != nil {
			t.Fatal(err)
		}
	}
	type dayState struct{ pending, passRows int }
	state := func(d string) dayState {
		t.Helper()
		var s dayState
		if err := sqlDB(t, path).QueryRow(`SELECT pending, (SELECT count(*) FROM stats_activity a WHERE a.application = d.application AND a.day = d.day AND pass >= 0)
FROM stats_day d WHERE day = ?`, d).Scan(&s.pending, &s.passRows); err != nil {
			t.Fatal(d, err)
		}
		return s
	}
	write(events...)
	shardtest.CheckSummaries(t, path)
	if s := state("2026-11-10"); s.pending != 2 || s.passRows != 200 {
		t.Errorf("day 10 (200 pass rows, FoldRows 100): %+v; want pending 2, its 200 pass rows kept", s)
	}
	if s := state("2026-11-11"); s.pending != 0 || s.passRows != 0 {
		t.Errorf("day 11 (small, finished): %+v; want folded", s)
	}
	if s := state("2026-11-12"); s.pending != 1 || s.passRows == 0 {
		t.Errorf("day 12 (the newest): %+v; want pending, unfolded", s)
	}

	// Days 12 and 13 end: both small, folded in one pass.
	var more []shard.Event
	for _, d := range []int{13, 14} {
		for i := range 10 {
			e := testEvent(i)
			e.Time = day(d, i)
			more = append(more, e)
		}
	}
	write(more[:10]...)
	write(more[10:]...)
	for _, d := range []string{"2026-11-12", "2026-11-13"} {
		if s := state(d); s.pending != 0 || s.passRows != 0 {
			t.Errorf("day %s (small, finished): %+v; want folded", d, s)
		}
	}
	shardtest.CheckSummaries(t, path)

	// A late row of day 10: pending 1 again, counted again, unfolded.
	late := testEvent(1000)
	late.Time = day(10, 300)
	write(late)
	next := testEvent(1001)
	next.Time = day(14, 30)
	write(next)
	if s := state("2026-11-10"); s.pending != 2 || s.passRows != 201 {
		t.Errorf("day 10 after a late row: %+v; want pending 2, 201 pass rows", s)
	}
	shardtest.CheckSummaries(t, path)
	if n, err := db.Erase(ctx, "u3", ""); err != nil || n != 29 {
		t.Fatalf("erase u3: %d, %v; want its 29 rows of day 10", n, err)
	}
	if s := state("2026-11-10"); s.pending != 2 || s.passRows != 201-29 {
		t.Errorf("day 10 after erasing u3: %+v; want pending 2, 172 pass rows", s)
	}
	shardtest.CheckSummaries(t, path)
	checkFieldsBuilt(t, path, 1)
}
