package query_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/query"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
)

// TestComputeFunnelValue_Chunks checks the funnel and value statistics read
// in pieces (the days' id ranges in pieces of 7 ids, read two at a time,
// each packed in one text) against the raw rows, on users and event types
// holding the packing's separators (spaces, digits, newlines, commas), on
// values that are not numbers, and with a tail: the rows of the last days
// left out of stats_day, as when the summaries lag behind the writer.
func TestComputeFunnelValue_Chunks(t *testing.T) {
	query.SetChunkIDs(t, 7)
	rng := rand.New(rand.NewPCG(7, 14))
	users := []string{"u1", "7", "12 34", "a\nb", "tab\tid", "comma,id", "élan", "x", "9 9 9", " ", "rs\x1eid", "us\x1fid", "us\x1f"}
	types := []string{"st art", "lvl,1", "end\n", "9", "other"}
	values := []string{`{"score":%d}`, `{"score":"1,2"}`, `{"score":1e99999}`, `{"score":-0}`, `{"score":1e-400}`,
		`{"score":%d.25}`, `not json`, `{"other":1}`, `{"score":[1,2]}`, `{"score":{"a":1}}`}
	start := day("2026-10-01")
	var events []shard.Event
	for i := 0; i < 1200; i++ {
		v := values[rng.IntN(len(values))]
		if v[len(v)-1] == '}' && rng.IntN(2) == 0 {
			v = values[0]
		}
		if n := rng.IntN(1000) - 300; v == values[0] || v == values[5] {
			v = fmt.Sprintf(v, n)
		}
		events = append(events, shard.Event{
			// Several events of a user at the same second too.
			Time:        start.Add(time.Duration(rng.IntN(20*24*60)) * time.Minute),
			Application: []string{"A", "B"}[rng.IntN(2)],
			UserID:      users[rng.IntN(len(users))],
			SessionID:   fmt.Sprintf("s%d", rng.IntN(50)),
			EventType:   types[rng.IntN(len(types))],
			Version:     "1",
			Platform:    []string{"Linux", "Web"}[rng.IntN(2)],
			Value:       v,
		})
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].Time.Before(events[j].Time) })
	path := filepath.Join(t.TempDir(), "chunks.db")
	querytest.Write(t, path, events)
	raw := querytest.OpenReadOnly(t, querytest.WithoutSummaries(t, path))
	sums := map[string]*sql.DB{"summaries": querytest.OpenReadOnly(t, path), "summaries with a tail": querytest.OpenReadOnly(t, withTail(t, path, "2026-10-15"))}
	ctx := context.Background()
	filters := []query.Filter{
		{Application: "A", Since: day("2026-10-01"), Until: day("2026-10-20")},
		{Application: "B", Since: day("2026-10-12"), Until: day("2026-10-18"), Platform: "Web"},
		{Application: "B", Since: day("2026-10-19"), Until: day("2026-10-25")},
	}
	for name, sum := range sums {
		for _, f := range filters {
			for _, steps := range [][]string{{"st art", "lvl,1", "end\n"}, {"9", "9", "st art"}, {"lvl,1", "other"}} {
				got := sameFunnel(t, fmt.Sprintf("%s: funnel %q %+v", name, steps, f), sum, raw, f, steps)
				if got[0].Users == 0 && f.Since.Before(day("2026-10-19")) {
					t.Errorf("%s: funnel %q %+v: nobody", name, steps, f)
				}
			}
			for _, et := range types {
				f.EventType = et
				sameValue(t, fmt.Sprintf("%s: value %+v", name, f), sum, raw, f, "score")
			}
		}
	}
	// The raw answer itself: of the numbers, 1e99999 and the texts are
	// skipped, -0 and 1e-400 count as 0.
	f := query.Filter{Application: "A", Since: day("2026-10-01"), Until: day("2026-10-20"), EventType: "9"}
	got, err := query.ComputeValue(ctx, raw, f, "score")
	if err != nil {
		t.Fatal(err)
	}
	var count, skipped int64
	for _, d := range got {
		count, skipped = count+d.Count, skipped+d.Skipped
	}
	var wantCount, wantSkipped int64
	for _, e := range events {
		if e.Application != "A" || e.EventType != "9" || e.Time.After(day("2026-10-21")) {
			continue
		}
		switch e.Value {
		case `{"score":"1,2"}`, `{"score":1e99999}`, `not json`, `{"other":1}`, `{"score":[1,2]}`, `{"score":{"a":1}}`:
			wantSkipped++
		default:
			wantCount++
		}
	}
	if count != wantCount || skipped != wantSkipped {
		t.Errorf("value of 9: %d numbers, %d skipped; want %d and %d", count, skipped, wantCount, wantSkipped)
	}
}

// withTail copies the database at path without the stats_day rows from
// the day from on: their rows are then above every id stats_day holds, as
// rows the summaries have not reached yet.
func withTail(t *testing.T, path, from string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "tail-"+filepath.Base(path))
	querytest.CopyFile(t, path, out)
	db, err := sql.Open("sqlite3", "file:"+out)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := db.Exec("DELETE FROM "+shard.SummaryDays+" WHERE day >= ?", from)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		t.Fatal("no stats_day rows deleted")
	}
	return out
}
