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

// Values the value statistics' summary (stats_value) must read as the raw
// rows do. regularValues are summarised; irregularValues leave their
// group's day to the raw rows.
var (
	regularValues = []string{
		`{"score":%d,"stats":{"time":%d.25},"n":-0}`, `{"score":%de2}`, `{"score":-%d.5E-1,"level":3}`, ` { "score" : %d } `,
		`{"score":"12"}`, `{"score":true}`, `{"score":null}`, `{"score":[1,2]}`, `{"score":{"x":1}}`, `{}`, `not json`, `{"score":`,
		`{"score":1e99999}`, `{"score":-1e99999,"n":1e-400}`, `{"score":-0}`, `{"s":"nul\u0000 🎮 \"q\" \\","score":7}`,
		`{"score":123456789012345678901234567890}`, `{"score":0.1000000000000000055511151231257827}`,
		// Duplicate keys: the lookup takes the first.
		`{"score":1,"score":2}`, `{"score":"x","score":3}`, `{"stats":1,"stats":{"time":4}}`, `{"stats":{"time":5},"stats":{"time":6}}`,
		// Keys holding dots, keys outside the field alphabet, arrays.
		`{"a.b":1,"a":{"b":2}}`, `{"stats.time":9,"a.b":8}`, `{"a b":1,"é":2,"score":3,"":4,"x-y":5,"1a":6}`,
		`{"arr":[{"score":1}],"score":2}`, `[{"score":1}]`, `5`, `"score"`, `{"a":{"":{"b":1}}}`,
		`{"d":{"d":{"d":{"d":{"d":{"d":{"d":{"d":{"x":%d}}}}}}}}}`,
	}
	irregularValues = []string{
		// A key written with escapes: $."score" finds it, json_tree
		// spells it otherwise.
		`{"sc\u006fre":%d}`, `{"st\u0061ts":{"time":%d}}`,
		// More fields than one event may add.
		manyFields(70),
	}
)

func manyFields(n int) string {
	var b strings.Builder
	b.WriteString(`{"score":%d`)
	for i := range n {
		fmt.Fprintf(&b, `,"k%d":%d`, i, i)
	}
	return b.String() + "}"
}

// valueFields are the fields the tests ask for.
var valueFields = []string{"score", "stats.time", "a.b", "n", "level", "x-y", "1a", "d.d.d.d.d.d.d.d.x", "k7", "stats", "missing"}

// valueDataset writes n events of the seed over 20 days, irregular values
// on every fourth day only when irregular, and returns them and the path.
func valueDataset(t *testing.T, seed uint64, n int, irregular bool) ([]shard.Event, string) {
	rng := rand.New(rand.NewPCG(seed, 3))
	start := day("2026-10-01")
	var events []shard.Event
	for range n {
		at := start.Add(time.Duration(rng.IntN(20*24*60)) * time.Minute)
		v := regularValues[rng.IntN(len(regularValues))]
		if irregular && at.Day()%4 == 0 && rng.IntN(10) == 0 {
			v = irregularValues[rng.IntN(len(irregularValues))]
		}
		if strings.Contains(v, "%d") {
			args := make([]any, strings.Count(v, "%d"))
			for i := range args {
				args[i] = rng.IntN(2000) - 500
			}
			v = fmt.Sprintf(v, args...)
		}
		events = append(events, shard.Event{
			Time: at, Application: []string{"A", "B"}[rng.IntN(2)], UserID: fmt.Sprintf("u%d", rng.IntN(30)),
			SessionID: fmt.Sprintf("s%d", rng.IntN(100)), EventType: []string{"level", "end"}[rng.IntN(2)],
			Version: []string{"1", "2"}[rng.IntN(2)], Platform: []string{"Linux", "Web", "iOS"}[rng.IntN(3)], Value: v,
		})
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].Time.Before(events[j].Time) })
	path := filepath.Join(t.TempDir(), fmt.Sprintf("value-%d.db", seed))
	querytest.Write(t, path, events)
	return events, path
}

var valueFilters = []query.Filter{
	{Application: "A", Since: day("2026-10-01"), Until: day("2026-10-20"), EventType: "level"},
	{Application: "B", Since: day("2026-10-03"), Until: day("2026-10-17"), EventType: "end", Version: "2"},
	{Application: "A", Since: day("2026-10-04"), Until: day("2026-10-04"), EventType: "level", Platform: "Web"},
	{Application: "B", Since: day("2026-09-25"), Until: day("2026-10-25"), EventType: "level", Version: "1", Platform: "iOS"},
	{Application: "C", Since: day("2026-10-01"), Until: day("2026-10-20"), EventType: "level"},
}

// sameValues compares every field and filter read from sum (the summary)
// with raw (the raw rows), and returns how many numbers they counted.
func sameValues(t *testing.T, what string, sum, raw *sql.DB) (numbers int64) {
	t.Helper()
	ctx := context.Background()
	for _, f := range valueFilters {
		for _, field := range valueFields {
			got, err := query.ComputeValue(ctx, sum, f, field)
			if err != nil {
				t.Fatal(err)
			}
			want, err := query.ComputeValue(ctx, raw, f, field)
			if err != nil {
				t.Fatal(err)
			}
			querytest.EqualJSON(t, fmt.Sprintf("%s: %s %+v", what, field, f), got, string(mustJSON(t, want)))
			for _, d := range got {
				numbers += d.Count
			}
		}
	}
	return numbers
}

// TestComputeValue_Summary checks the value statistics read from
// stats_value against the raw rows, for several seeds, filters and fields,
// on values of every kind (numbers as JSON writes them, not numbers,
// invalid JSON, duplicate keys, keys with dots, escapes or other
// characters, arrays, deep and wide values): as written (passes folded),
// with a tail above the watermark and late rows on folded days, and after
// erasures and a retention delete. Days holding irregular values must be
// read raw (the escaped keys' numbers are then counted, which the summary
// alone would miss), the others from stats_value.
func TestComputeValue_Summary(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { valueSummary(t, seed) })
	}
}

func valueSummary(t *testing.T, seed uint64) {
	_, path := valueDataset(t, seed, 2500, true)
	shardtest.CheckSummaries(t, path)
	check := func(what string) {
		t.Helper()
		checkpoint(t, path)
		// Closed when done, so that the next copy has every row.
		sum, raw := query.OpenDB(path, query.Options{}), query.OpenDB(querytest.WithoutSummaries(t, path), query.Options{})
		defer sum.Close()
		defer raw.Close()
		if !querytest.Summarised(t, sum) || querytest.Summarised(t, raw) {
			t.Fatal("the summaries must be used on one copy only")
		}
		reads, rawDays := query.ValueReads()
		if n := sameValues(t, what, sum, raw); n == 0 {
			t.Errorf("%s: no numbers", what)
		}
		reads2, rawDays2 := query.ValueReads()
		if reads2-reads < int64(len(valueFilters)*len(valueFields)) || rawDays2 == rawDays {
			t.Errorf("%s: %d reads of stats_value, %d days of them raw; want every read from it, some days raw", what, reads2-reads, rawDays2-rawDays)
		}
	}
	check("written")

	// A tail above the watermark, some of it on folded days.
	rng := rand.New(rand.NewPCG(seed, 4))
	w, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for range 300 {
		v := regularValues[rng.IntN(len(regularValues))]
		if rng.IntN(20) == 0 {
			v = irregularValues[rng.IntN(len(irregularValues))]
		}
		v = strings.ReplaceAll(v, "%d", fmt.Sprint(rng.IntN(100)))
		_, err := w.Exec(`INSERT INTO event (event_type, application, version, platform, user_id, session_id, value, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			[]string{"level", "end"}[rng.IntN(2)], []string{"A", "B", "C"}[rng.IntN(3)], []string{"1", "2"}[rng.IntN(2)],
			[]string{"Linux", "Web", "iOS"}[rng.IntN(3)], fmt.Sprintf("u%d", rng.IntN(30)), "s1", v,
			day("2026-10-01").Add(time.Duration(rng.IntN(20*24*60))*time.Minute).Format(shard.TimeFormat))
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	check("with a tail")

	// The writer summarises the tail (late rows on folded days) as it
	// opens, then deletes.
	db := shardtest.Open(t, path, shard.Options{SummaryRows: 100})
	ctx := context.Background()
	if err := db.Summarize(ctx); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"u1", "u2", "u3"} {
		if n, err := db.Erase(ctx, u, ""); err != nil || n == 0 {
			t.Fatalf("erase %s: %d, %v", u, n, err)
		}
	}
	if n, err := db.Erase(ctx, "u4", "A"); err != nil || n == 0 {
		t.Fatalf("erase u4 of A: %d, %v", n, err)
	}
	if n, err := db.Prune(ctx, day("2026-10-03").Add(13*time.Hour)); err != nil || n == 0 {
		t.Fatalf("prune: %d, %v", n, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	shardtest.CheckSummaries(t, path)
	check("after deletes")
}

// TestComputeValue_SummaryRead checks that the value statistics are read
// from stats_value: with no irregular value, no day is read raw, and a
// number changed in stats_value (only there) changes the answer.
func TestComputeValue_SummaryRead(t *testing.T) {
	_, path := valueDataset(t, 9, 1500, false)
	shardtest.CheckSummaries(t, path)
	raw := querytest.OpenReadOnly(t, querytest.WithoutSummaries(t, path))
	sum := querytest.OpenReadOnly(t, path)
	reads, rawDays := query.ValueReads()
	sameValues(t, "regular", sum, raw)
	if reads2, rawDays2 := query.ValueReads(); reads2 == reads || rawDays2 != rawDays {
		t.Fatalf("%d reads of stats_value, %d days of them raw; want reads, none raw", reads2-reads, rawDays2-rawDays)
	}
	w, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	res, err := w.Exec(`UPDATE stats_value SET numbers = numbers || ',99999' WHERE application = 'A' AND day = '2026-10-05' AND event_type = 'level' AND field = '$.score'`)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		t.Fatal("no stats_value row changed")
	}
	f := query.Filter{Application: "A", Since: day("2026-10-05"), Until: day("2026-10-05"), EventType: "level"}
	got, err := query.ComputeValue(context.Background(), sum, f, "score")
	if err != nil {
		t.Fatal(err)
	}
	want, err := query.ComputeValue(context.Background(), raw, f, "score")
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Max == nil || *got[0].Max != 99999 || got[0].Count <= want[0].Count {
		t.Fatalf("after changing stats_value: %+v, raw %+v; want the changed number read", got[0], want[0])
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

// TestComputeValue_SummaryIrregular checks that a day whose group has an
// irregular value (left out of stats_value) is read raw: a key written
// with escapes, which the raw path reads and stats_value cannot hold, and
// an event with too many fields. Read from stats_value alone, day 2 would
// count one number and day 3 one.
func TestComputeValue_SummaryIrregular(t *testing.T) {
	at := func(d int) time.Time { return day("2026-10-01").AddDate(0, 0, d-1).Add(time.Hour) }
	var events []shard.Event
	for _, e := range []struct {
		day   int
		value string
	}{{1, `{"score":1}`}, {1, `{"score":2}`}, {2, `{"score":3}`}, {2, `{"sc\u006fre":10}`},
		{3, `{"score":4}`}, {3, strings.Replace(manyFields(70), "%d", "20", 1)}, {4, `{"score":5,"score":6}`}} {
		events = append(events, shard.Event{Time: at(e.day), Application: "A", UserID: "u", SessionID: "s", EventType: "level",
			Version: "1", Platform: "Web", Value: e.value})
	}
	path := filepath.Join(t.TempDir(), "irregular.db")
	querytest.Write(t, path, events)
	shardtest.CheckSummaries(t, path)
	sum := querytest.OpenReadOnly(t, path)
	var left string
	if err := sum.QueryRow(`SELECT group_concat(day || ':' || events) FROM stats_value WHERE field = '*'`).Scan(&left); err != nil || left != "2026-10-02:1,2026-10-03:1" {
		t.Fatalf("irregular rows %q, %v; want days 2 and 3 with one each", left, err)
	}
	_, rawDays := query.ValueReads()
	f := query.Filter{Application: "A", Since: day("2026-10-01"), Until: day("2026-10-04"), EventType: "level"}
	got, err := query.ComputeValue(context.Background(), sum, f, "score")
	if err != nil {
		t.Fatal(err)
	}
	var counts []string
	for _, d := range got {
		counts = append(counts, fmt.Sprintf("%d/%d/%v", d.Count, d.Skipped, *d.Max))
	}
	if s := strings.Join(counts, " "); s != "2/0/2 2/0/10 2/0/20 1/0/5" {
		t.Errorf("counts/skipped/max per day %s, want 2/0/2 2/0/10 2/0/20 1/0/5", s)
	}
	if _, rawDays2 := query.ValueReads(); rawDays2-rawDays != 2 {
		t.Errorf("%d days read raw, want 2", rawDays2-rawDays)
	}
}
