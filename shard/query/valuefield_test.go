package query_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/query"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

// valueTexts are values of every kind: numbers as JSON writes them, not
// numbers, invalid JSON, duplicate and escaped keys, keys with dots,
// arrays, deep values. The registry's summary keeps the raw path's own
// texts, so it must read all of them as the raw rows do.
var valueTexts = []string{
	`{"score":%d,"stats":{"time":%d.25},"n":-0}`, `{"score":%de2}`, `{"score":-%d.5E-1,"level":3}`, ` { "score" : %d } `,
	`{"score":"12"}`, `{"score":true}`, `{"score":null}`, `{"score":[1,2]}`, `{"score":{"x":1}}`, `{}`, `not json`, `{"score":`,
	`{"score":1e99999}`, `{"score":-1e99999,"n":1e-400}`, `{"score":-0}`, `{"s":"nul\u0000 🎮 \"q\" \\","score":7}`,
	`{"score":123456789012345678901234567890}`, `{"score":0.1000000000000000055511151231257827}`,
	`{"score":1,"score":2}`, `{"score":"x","score":3}`, `{"stats":1,"stats":{"time":4}}`, `{"stats":{"time":5},"stats":{"time":6}}`,
	`{"a.b":1,"a":{"b":2}}`, `{"stats.time":9,"a.b":8}`, `{"a b":1,"é":2,"score":3,"":4,"x-y":5,"1a":6}`,
	`{"arr":[{"score":1}],"score":2}`, `[{"score":1}]`, `5`, `"score"`, `{"sc\u006fre":%d}`, `{"st\u0061ts":{"time":%d}}`,
	`{"d":{"d":{"d":{"d":{"x":%d}}}}}`,
}

// registryFields are the (application, event type, field) triples the
// tests register: 15, more than shard.MaxValueFields (allFields).
var registryFields = func() (out [][3]string) {
	for _, at := range [][2]string{{"A", "level"}, {"B", "end"}, {"B", "level"}} {
		for _, f := range []string{"score", "stats.time", "a.b", "d.d.d.d.x", "missing"} {
			out = append(out, [3]string{at[0], at[1], f})
		}
	}
	return out
}()

var registryFilters = []query.Filter{
	{Application: "A", Since: day("2026-10-01"), Until: day("2026-10-20"), EventType: "level"},
	{Application: "B", Since: day("2026-10-03"), Until: day("2026-10-17"), EventType: "end", Version: "2"},
	{Application: "A", Since: day("2026-10-04"), Until: day("2026-10-04"), EventType: "level", Platform: "Web"},
	{Application: "B", Since: day("2026-09-25"), Until: day("2026-10-25"), EventType: "level", Version: "1", Platform: "iOS"},
}

// allFields lets the registry hold all of registryFields during the test.
func allFields(t *testing.T) {
	n, m := shard.MaxValueFields, shard.MaxTypeFields
	shard.MaxValueFields, shard.MaxTypeFields = max(n, len(registryFields)), max(m, len(registryFields))
	t.Cleanup(func() { shard.MaxValueFields, shard.MaxTypeFields = n, m })
}

func randomValue(rng *rand.Rand) string {
	v := valueTexts[rng.IntN(len(valueTexts))]
	args := make([]any, strings.Count(v, "%d"))
	for i := range args {
		args[i] = rng.IntN(2000) - 500
	}
	return fmt.Sprintf(v, args...)
}

// registryDataset writes n random events over 20 days.
func registryDataset(t *testing.T, seed uint64, n int) string {
	path := filepath.Join(t.TempDir(), fmt.Sprintf("registry-%d.db", seed))
	querytest.Write(t, path, registryEvents(seed, n))
	return path
}

// registryEvents are n random events over 20 days, in time order.
func registryEvents(seed uint64, n int) []shard.Event {
	rng := rand.New(rand.NewPCG(seed, 3))
	start := day("2026-10-01")
	var events []shard.Event
	for range n {
		events = append(events, shard.Event{
			Time: start.Add(time.Duration(rng.IntN(20*24*60)) * time.Minute), Application: []string{"A", "B"}[rng.IntN(2)],
			UserID: fmt.Sprintf("u%d", rng.IntN(30)), SessionID: fmt.Sprintf("s%d", rng.IntN(100)), EventType: []string{"level", "end"}[rng.IntN(2)],
			Version: []string{"1", "2"}[rng.IntN(2)], Platform: []string{"Linux", "Web", "iOS"}[rng.IntN(3)], Value: randomValue(rng),
		})
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].Time.Before(events[j].Time) })
	return events
}

// sameAsRaw compares every registered field under every filter read from
// the database at path with the raw rows (a copy without summaries); it
// returns how many reads came from the registry's summary.
func sameAsRaw(t *testing.T, what, path string) int64 {
	t.Helper()
	checkpoint(t, path)
	sum, raw := query.OpenDB(path, query.Options{}), query.OpenDB(querytest.WithoutSummaries(t, path), query.Options{})
	defer sum.Close()
	defer raw.Close()
	before := query.ValueFromFields()
	numbers := int64(0)
	for _, f := range registryFilters {
		for _, k := range registryFields {
			if k[0] != f.Application || k[1] != f.EventType {
				continue
			}
			got := sameValue(t, fmt.Sprintf("%s: %s %+v", what, k[2], f), sum, raw, f, k[2])
			for _, d := range got {
				numbers += d.Count
			}
		}
	}
	if numbers == 0 {
		t.Errorf("%s: no numbers", what)
	}
	return query.ValueFromFields() - before
}

// wantReads is how many reads sameAsRaw makes.
func wantReads() (n int64) {
	for _, f := range registryFilters {
		for _, k := range registryFields {
			if k[0] == f.Application && k[1] == f.EventType {
				n++
			}
		}
	}
	return n
}

func register(t *testing.T, db *shard.DB, k [3]string) {
	t.Helper()
	path, err := query.JSONPath(k[2])
	if err != nil {
		t.Fatal(err)
	}
	if err := db.RegisterValueField(context.Background(), k[0], k[1], k[2], path); err != nil {
		t.Fatal(err)
	}
}

// TestValueFields_Random checks the value statistics read from the field
// registry's summary against the raw rows on random data: fields
// registered after the rows were summarised (filled in by backfill
// chunks), then a tail above the watermark (late rows on folded days), a
// summary pass over it, an ERASE_EVENT_TYPE erasure, erasures and a
// retention delete.
func TestValueFields_Random(t *testing.T) {
	defer func(n int) { shard.ValueBackfillRows = n }(shard.ValueBackfillRows)
	shard.ValueBackfillRows = 97
	allFields(t)
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			path := registryDataset(t, seed, 2500)
			shardtest.CheckSummaries(t, path)
			if n := sameAsRaw(t, "unregistered", path); n != 0 {
				t.Fatalf("%d reads from the registry before any field is registered", n)
			}
			ctx := context.Background()
			db := shardtest.Open(t, path, shard.Options{SummaryRows: 100})
			for _, k := range registryFields {
				register(t, db, k)
			}
			if err := db.Summarize(ctx); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if n := sameAsRaw(t, "registered", path); n != wantReads() {
				t.Fatalf("registered: %d reads from the registry, want %d", n, wantReads())
			}

			// A tail above the watermark, some of it on folded days.
			rng := rand.New(rand.NewPCG(seed, 4))
			w := shardtest.SQL(t, path)
			for range 300 {
				_, err := w.Exec(`INSERT INTO event (event_type, application, version, platform, user_id, session_id, value, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
					[]string{"level", "end"}[rng.IntN(2)], []string{"A", "B", "C"}[rng.IntN(3)], []string{"1", "2"}[rng.IntN(2)],
					[]string{"Linux", "Web", "iOS"}[rng.IntN(3)], fmt.Sprintf("u%d", rng.IntN(30)), "s1", randomValue(rng),
					day("2026-10-01").Add(time.Duration(rng.IntN(20*24*60))*time.Minute).Format(shard.TimeFormat))
				if err != nil {
					t.Fatal(err)
				}
			}
			w.Close()
			if n := sameAsRaw(t, "with a tail", path); n != wantReads() {
				t.Fatalf("with a tail: %d reads from the registry, want %d", n, wantReads())
			}

			db = shardtest.Open(t, path, shard.Options{SummaryRows: 100, EraseEventType: "forget"})
			if err := db.Summarize(ctx); err != nil {
				t.Fatal(err)
			}
			// ERASE_EVENT_TYPE: u5's earlier rows of B go.
			if err := db.Write(0, []shard.Event{{Time: day("2026-10-10"), Application: "B", UserID: "u5", SessionID: "s1",
				EventType: "forget", Version: "1", Platform: "Web", Value: "{}"}}); err != nil {
				t.Fatal(err)
			}
			r := shardtest.SQL(t, path)
			for deadline := time.Now().Add(10 * time.Second); ; {
				var n int
				if err := r.QueryRow(`SELECT count(*) FROM event WHERE user_id = 'u5' AND application = 'B'`).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("ERASE_EVENT_TYPE: %d rows of u5 in B left after 10 s", n)
				}
				time.Sleep(10 * time.Millisecond)
			}
			r.Close()
			if err := db.Summarize(ctx); err != nil {
				t.Fatal(err)
			}
			eraseAndPrune(t, db, day("2026-10-03").Add(13*time.Hour))
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			shardtest.CheckSummaries(t, path)
			if n := sameAsRaw(t, "after deletes", path); n != wantReads() {
				t.Fatalf("after deletes: %d reads from the registry, want %d", n, wantReads())
			}
		})
	}
}

// TestValueFields_Backfill checks that a field registered on a summarised
// database is filled in by the writer in chunks of ValueBackfillRows ids,
// between group commits, while its reads go to the raw rows, and is read
// from the summary once complete; and that a number changed in
// stats_value_num (only there) changes the answer, so the summary is what
// is read.
func TestValueFields_Backfill(t *testing.T) {
	defer func(n int) { shard.ValueBackfillRows = n }(shard.ValueBackfillRows)
	shard.ValueBackfillRows = 20
	path := registryDataset(t, 5, 3000)
	shardtest.CheckSummaries(t, path)
	db := shardtest.Open(t, path, shard.Options{})
	r := shardtest.SQL(t, path)
	var top int64
	if err := r.QueryRow(`SELECT built_id FROM stats_state`).Scan(&top); err != nil || top < 3000 {
		t.Fatalf("watermark %d, %v", top, err)
	}
	register(t, db, [3]string{"A", "level", "score"})
	seen := map[int64]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var built int64
		if err := r.QueryRow(`SELECT built_id FROM stats_value_field`).Scan(&built); err != nil {
			t.Fatal(err)
		}
		seen[built] = true
		if built == top {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the field is at %d of %d after 30 s", built, top)
		}
		time.Sleep(100 * time.Microsecond)
	}
	// Chunks of 20 ids over 3000 rows: 150 steps; a few must be seen.
	if len(seen) < 4 {
		t.Errorf("built_id went through %d values, want the steps of chunks", len(seen))
	}
	for b := range seen {
		if b%20 != 0 && b != top {
			t.Errorf("built_id %d is not a chunk's end", b)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	sum := querytest.OpenReadOnly(t, path)
	f := query.Filter{Application: "A", Since: day("2026-10-05"), Until: day("2026-10-05"), EventType: "level"}
	before, _ := query.ComputeValue(context.Background(), sum, f, "score")
	w := shardtest.SQL(t, path)
	res, err := w.Exec(`UPDATE stats_value_num SET numbers = concat_ws(',', numbers, '99999') WHERE (application, day, event_type, field, pass, version, platform) =
	(SELECT application, day, event_type, field, pass, version, platform FROM stats_value_num WHERE application = 'A' AND day = '2026-10-05' AND event_type = 'level' AND field = 'score' LIMIT 1)`)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("%d rows of stats_value_num changed, want 1", n)
	}
	got, err := query.ComputeValue(context.Background(), sum, f, "score")
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Count != before[0].Count+1 || got[0].Skipped != before[0].Skipped-1 {
		t.Fatalf("after changing stats_value_num: %+v (before %+v); want the changed number read", got[0], before[0])
	}
}

// TestValueFields_Bound checks that the registry holds at most
// shard.MaxValueFields fields: a new one replaces the least recently
// asked, whose numbers go with it.
func TestValueFields_Bound(t *testing.T) {
	// All on one type: the bound of a type out of the way
	// (TestValueFields_TypeBound).
	m := shard.MaxTypeFields
	shard.MaxTypeFields = shard.MaxValueFields
	t.Cleanup(func() { shard.MaxTypeFields = m })
	path := registryDataset(t, 6, 500)
	db := shardtest.Open(t, path, shard.Options{})
	for i := range shard.MaxValueFields {
		register(t, db, [3]string{"A", "level", fmt.Sprintf("f%02d", i)})
	}
	// Filled in (Close does not wait for the backfill).
	if err := db.Summarize(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	w := shardtest.SQL(t, path)
	// f05 the least recently asked, the others later, by field (all
	// within shard.ValueFieldIdle).
	if _, err := w.Exec(`UPDATE stats_value_field SET asked_at = unixepoch() - CASE field WHEN 'f05' THEN 3600 ELSE 1000 - CAST(substr(field, 2) AS INTEGER) END`); err != nil {
		t.Fatal(err)
	}
	count := func(q string) (n int) {
		t.Helper()
		if err := w.QueryRow(q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(`SELECT count(*) FROM stats_value_num WHERE field = 'f05'`); n == 0 {
		t.Fatal("f05 has no summary rows")
	}
	db = shardtest.Open(t, path, shard.Options{})
	register(t, db, [3]string{"A", "level", "new"})
	last := fmt.Sprintf("f%02d", shard.MaxValueFields-1)
	register(t, db, [3]string{"A", "level", last}) // registered: no change
	if err := db.Summarize(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	var fields string
	if err := w.QueryRow(`SELECT group_concat(field, ' ') FROM (SELECT field FROM stats_value_field ORDER BY field)`).Scan(&fields); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range shard.MaxValueFields {
		if i != 5 {
			want = append(want, fmt.Sprintf("f%02d", i))
		}
	}
	want = append(want, "new")
	if fields != strings.Join(want, " ") {
		t.Errorf("registry %q, want %q", fields, want)
	}
	if n := count(`SELECT count(*) FROM stats_value_num WHERE field = 'f05'`); n != 0 {
		t.Errorf("%d summary rows of the dropped field left", n)
	}
	if n := count(`SELECT count(*) FROM stats_value_num WHERE field = 'new'`); n == 0 {
		t.Error("the new field has no summary rows")
	}
}

// checkpoint moves the write-ahead log of the database at path into its
// file, which querytest.WithoutSummaries copies.
func checkpoint(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var busy, log, done int
	if err := db.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &log, &done); err != nil || busy != 0 || log != done {
		t.Fatalf("checkpoint: busy %d, log %d, checkpointed %d, %v", busy, log, done, err)
	}
}

// TestReaderValue_Asks checks that a Reader tells Options.AskValue of each
// value request, with the JSON path the registry's summary is keyed by,
// and that a field registered that way is read from the summary once the
// writer has filled it in.
func TestReaderValue_Asks(t *testing.T) {
	path := registryDataset(t, 7, 800)
	db := shardtest.Open(t, path, shard.Options{})
	var asks []string
	r, err := query.Open(path, query.Options{AskValue: func(application, eventType, field, p string) {
		asks = append(asks, application+"|"+eventType+"|"+field+"|"+p)
		db.AskValueField(application, eventType, field, p)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f := registryFilters[0]
	want, err := r.Value(context.Background(), f, "stats.time")
	if err != nil {
		t.Fatal(err)
	}
	if len(asks) != 1 || asks[0] != `A|level|stats.time|$."stats"."time"` {
		t.Fatalf("asks %q", asks)
	}
	// The ask is queued: Summarize, after it in the writer's loop once
	// the field is there, fills it in.
	before := query.ValueFromFields()
	for deadline := time.Now().Add(10 * time.Second); query.ValueFromFields() == before; {
		if err := db.Summarize(context.Background()); err != nil {
			t.Fatal(err)
		}
		got, err := r.Value(context.Background(), f, "stats.time")
		if err != nil {
			t.Fatal(err)
		}
		querytest.EqualJSON(t, "stats.time", got, string(mustJSON(t, want)))
		if time.Now().After(deadline) {
			t.Fatal("the asked field is not read from the registry's summary after 10 s")
		}
	}
}
