package query_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/gocolytics/gocolytics/shard"
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
