package query_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/query"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

// sameStatsAndValue checks that the stats and the value statistics of
// field k read from the database at path equal those read from its raw
// rows, and returns how many value reads came from the field registry.
func sameStatsAndValue(t *testing.T, what, path string, k [3]string) int64 {
	t.Helper()
	ctx := context.Background()
	checkpoint(t, path)
	sum, raw := querytest.OpenReadOnly(t, path), querytest.OpenReadOnly(t, querytest.WithoutSummaries(t, path))
	f := query.Filter{Application: k[0], Since: day("2026-10-01"), Until: day("2026-10-20")}
	got, err := query.ComputeStats(ctx, sum, f, day("2026-10-15"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := query.ComputeStats(ctx, raw, f, day("2026-10-15"))
	if err != nil {
		t.Fatal(err)
	}
	querytest.EqualJSON(t, what+": stats", got, string(mustJSON(t, want)))
	f.EventType = k[1]
	before := query.ValueFromFields()
	gotValue, err := query.ComputeValue(ctx, sum, f, k[2])
	if err != nil {
		t.Fatal(err)
	}
	wantValue, err := query.ComputeValue(ctx, raw, f, k[2])
	if err != nil {
		t.Fatal(err)
	}
	querytest.EqualJSON(t, what+": value", gotValue, string(mustJSON(t, wantValue)))
	return query.ValueFromFields() - before
}

// TestSummaries_Layout3 checks the one-time rebuild between the released
// server's summaries (layout 3, no field registry) and this one's (layout
// 6). Up: a layout-3 file (this code's file with the marker set back to 3
// and the registry's tables gone, as the released server leaves it; its
// counts spoiled, to show they are never read) is read raw until this
// writer has rebuilt it at layout 6 from id 0; then everything answers as
// the raw rows do, a registered field from the registry. Down and back:
// the released server rebuilds at 3 and leaves the registry's tables it
// does not know, then erases a player without taking the numbers out;
// this writer, back, drops the registry (its numbers missed that erasure)
// and rebuilds at 6, answering as the raw rows do.
func TestSummaries_Layout3(t *testing.T) {
	path := registryDataset(t, 12, 800)
	ctx := context.Background()
	field := [3]string{"A", "level", "score"}
	w := shardtest.SQL(t, path)
	exec := func(qs ...string) {
		t.Helper()
		for _, q := range qs {
			if _, err := w.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	state := func() (version, built, fields int64) {
		t.Helper()
		if err := w.QueryRow(`SELECT version, built_id, (SELECT count(*) FROM stats_value_field) FROM stats_state`).Scan(&version, &built, &fields); err != nil {
			t.Fatal(err)
		}
		return version, built, fields
	}

	// Up: 3 -> 6.
	exec("DROP TABLE stats_value_field", "DROP TABLE stats_value_num", "UPDATE stats_state SET version = 3",
		"UPDATE stats_activity SET events = events + 1000", "UPDATE stats_user SET first_time = '2026-10-19'")
	sameStatsAndValue(t, "layout 3, before the upgrade", path, field)
	db := shardtest.Open(t, path, shard.Options{SummaryInterval: time.Hour})
	if v, b, f := state(); v != 6 || b != 0 || f != 0 {
		t.Fatalf("opened at layout 6: version %d, watermark %d, %d fields; want 6, 0 (rebuilt from id 0), 0", v, b, f)
	}
	sameStatsAndValue(t, "layout 6, rebuilding", path, field)
	register(t, db, field)
	if err := db.Summarize(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	shardtest.CheckSummaries(t, path)
	if n := sameStatsAndValue(t, "layout 6, rebuilt", path, field); n != 1 {
		t.Errorf("layout 6, rebuilt: %d value reads from the registry, want 1", n)
	}

	// Down (6 -> 3: the released server) and back (3 -> 6).
	var user string
	if err := w.QueryRow(`SELECT user_id FROM event WHERE application = 'A' AND event_type = 'level' GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1`).Scan(&user); err != nil {
		t.Fatal(err)
	}
	exec("UPDATE stats_state SET version = 3", fmt.Sprintf("DELETE FROM event WHERE user_id = '%s'", user))
	db = shardtest.Open(t, path, shard.Options{SummaryInterval: time.Hour})
	if v, b, f := state(); v != 6 || b != 0 || f != 0 {
		t.Fatalf("back at layout 6: version %d, watermark %d, %d fields; want 6, 0 (rebuilt from id 0), 0 (the registry dropped)", v, b, f)
	}
	var nums int
	if err := w.QueryRow(`SELECT count(*) FROM stats_value_num`).Scan(&nums); err != nil || nums != 0 {
		t.Fatalf("registry numbers after coming back: %d, %v; want none", nums, err)
	}
	sameStatsAndValue(t, "back at layout 6, rebuilding", path, field)
	if err := db.Summarize(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	shardtest.CheckSummaries(t, path)
	if n := sameStatsAndValue(t, "back at layout 6, rebuilt", path, field); n != 0 {
		t.Errorf("back at layout 6: %d value reads from the registry, want 0 (read raw until asked again)", n)
	}
}
