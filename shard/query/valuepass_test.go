package query_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/query"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

// TestValueFields_Pass checks the numbers the summary passes add up
// (shard's valuePass), not the backfill's: the fields are registered on
// an empty database, so they are complete at once and every row reaches
// them through a pass; the passes (querytest.Write: 400 rows each) hold
// several rows per group. Equal to the raw rows, every read from the
// registry.
func TestValueFields_Pass(t *testing.T) {
	allFields(t)
	for _, seed := range []uint64{3, 4} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pass.db")
			db := shardtest.Open(t, path, shard.Options{})
			for _, k := range registryFields {
				register(t, db, k)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			querytest.Write(t, path, registryEvents(seed, 2500))
			shardtest.CheckSummaries(t, path)
			r := shardtest.SQL(t, path)
			var groups, rows int64
			if err := r.QueryRow(`SELECT count(*), coalesce(sum(events), 0) FROM stats_value_num WHERE numbers IS NOT NULL`).Scan(&groups, &rows); err != nil {
				t.Fatal(err)
			}
			r.Close()
			// Groups of several rows, or the pass's adding up is untested.
			if groups == 0 || rows < 3*groups {
				t.Fatalf("%d rows in %d groups with numbers; want groups of several rows", rows, groups)
			}
			if n := sameAsRaw(t, "passes", path); n != wantReads() {
				t.Fatalf("passes: %d reads from the registry, want %d", n, wantReads())
			}
		})
	}
}

// TestValueFields_Expire checks that a field nobody asked for in
// shard.ValueFieldIdle is dropped with its numbers by the next summary
// pass, and a field asked for since stays, read from the registry.
func TestValueFields_Expire(t *testing.T) {
	path := registryDataset(t, 8, 600)
	db := shardtest.Open(t, path, shard.Options{})
	old, fresh := [3]string{"A", "level", "score"}, [3]string{"A", "level", "stats.time"}
	register(t, db, old)
	register(t, db, fresh)
	if err := db.Summarize(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	w := shardtest.SQL(t, path)
	defer w.Close()
	count := func(field string) (fields, nums int) {
		t.Helper()
		if err := w.QueryRow(`SELECT (SELECT count(*) FROM stats_value_field WHERE field = ?1), (SELECT count(*) FROM stats_value_num WHERE field = ?1)`,
			field).Scan(&fields, &nums); err != nil {
			t.Fatal(err)
		}
		return fields, nums
	}
	idle := int64(shard.ValueFieldIdle / time.Second)
	// score last asked just over the limit ago, stats.time just under.
	if _, err := w.Exec(`UPDATE stats_value_field SET asked_at = unixepoch() - CASE field WHEN 'score' THEN ?1 + 60 ELSE ?1 - 60 END`, idle); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"score", "stats.time"} {
		if fields, nums := count(f); fields != 1 || nums == 0 {
			t.Fatalf("%s before the pass: %d registry rows, %d summary rows", f, fields, nums)
		}
	}
	db = shardtest.Open(t, path, shard.Options{})
	if err := db.Write(0, []shard.Event{{Time: day("2026-10-20"), Application: "A", UserID: "u1", SessionID: "s1",
		EventType: "level", Version: "1", Platform: "Web", Value: `{"score":1,"stats":{"time":2}}`}}); err != nil {
		t.Fatal(err)
	}
	if err := db.Summarize(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if fields, nums := count("score"); fields != 0 || nums != 0 {
		t.Errorf("score after the pass: %d registry rows, %d summary rows; want it dropped", fields, nums)
	}
	if fields, nums := count("stats.time"); fields != 1 || nums == 0 {
		t.Errorf("stats.time after the pass: %d registry rows, %d summary rows; want it kept", fields, nums)
	}
	checkpoint(t, path)
	sum, raw := querytest.OpenReadOnly(t, path), querytest.OpenReadOnly(t, querytest.WithoutSummaries(t, path))
	f := registryFilters[0]
	before := query.ValueFromFields()
	for _, k := range []string{"score", "stats.time"} {
		got, err := query.ComputeValue(context.Background(), sum, f, k)
		if err != nil {
			t.Fatal(err)
		}
		want, err := query.ComputeValue(context.Background(), raw, f, k)
		if err != nil {
			t.Fatal(err)
		}
		querytest.EqualJSON(t, k, got, string(mustJSON(t, want)))
	}
	if n := query.ValueFromFields() - before; n != 1 {
		t.Errorf("%d reads from the registry, want 1 (stats.time)", n)
	}
}

// TestValueFields_TypeBound checks that an event type holds at most
// shard.MaxTypeFields fields: a new one of a full type replaces the least
// recently asked of that type, not an older field of another type.
func TestValueFields_TypeBound(t *testing.T) {
	m := shard.MaxTypeFields
	shard.MaxTypeFields = 4 // the want below
	t.Cleanup(func() { shard.MaxTypeFields = m })
	path := registryDataset(t, 9, 500)
	db := shardtest.Open(t, path, shard.Options{})
	register(t, db, [3]string{"B", "end", "score"})
	for i := range shard.MaxTypeFields {
		register(t, db, [3]string{"A", "level", fmt.Sprintf("f%d", i)})
	}
	if err := db.Summarize(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	w := shardtest.SQL(t, path)
	defer w.Close()
	// B's score the least recently asked of all, f1 of A's level.
	if _, err := w.Exec(`UPDATE stats_value_field SET asked_at = unixepoch() - CASE field WHEN 'score' THEN 7200 WHEN 'f1' THEN 3600 ELSE 60 END`); err != nil {
		t.Fatal(err)
	}
	db = shardtest.Open(t, path, shard.Options{})
	register(t, db, [3]string{"A", "level", "new"})
	if err := db.Summarize(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	var fields string
	var f1 int
	if err := w.QueryRow(`SELECT (SELECT group_concat(k, ' ') FROM (SELECT application || '/' || event_type || '/' || field AS k FROM stats_value_field ORDER BY k)),
	(SELECT count(*) FROM stats_value_num WHERE field = 'f1')`).Scan(&fields, &f1); err != nil {
		t.Fatal(err)
	}
	want := "A/level/f0 A/level/f2 A/level/f3 A/level/new B/end/score"
	if fields != want || f1 != 0 {
		t.Errorf("registry %q with %d rows of f1, want %q and none", fields, f1, want)
	}
}
