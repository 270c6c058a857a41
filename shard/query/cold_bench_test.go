package query_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard/query"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
)

// BenchmarkCold_30Days is what a dashboard user waits for when the
// database's pages have left the page cache (memory pressure, or a reclaim
// of pages unused for a while: DESIGN.md "The first request after a
// pause"): each operation drops the summarised benchmark database's pages
// (querytest.Evict) and opens new connections, as the server does after a
// minute without requests, then asks for the 30 days once (ns/op,
// disk-MB/op: the bytes read from storage) and at once again on the same
// connections, the pages now in memory (warm-ms/op): the ratio of the two,
// in the same run, is the cost of the cold pages.
//
// Run with: flock /tmp/gocolytics-bench.lock go test -run '^$' -bench Cold -benchtime 3x ./shard/query/
// (it drops the pages of the shared benchmark database: the next
// benchmark's first round finds them cold).
func BenchmarkCold_30Days(b *testing.B) {
	ops := []struct {
		name string
		op   func(ctx context.Context, db *sql.DB) error
	}{
		{"stats", func(ctx context.Context, db *sql.DB) error {
			_, err := query.ComputeStats(ctx, db, last30(), benchGame.Last, "event_type", "version")
			return err
		}},
		{"funnel", func(ctx context.Context, db *sql.DB) error {
			_, err := query.ComputeFunnel(ctx, db, last30(), []string{"start", "level_start", "level_end", "purchase"})
			return err
		}},
		{"value", func(ctx context.Context, db *sql.DB) error {
			f := last30()
			f.EventType = "level_end"
			_, err := query.ComputeValue(ctx, db, f, "stats.time")
			return err
		}},
	}
	path := querytest.CachedSummarised(b, benchGame)
	for _, o := range ops {
		b.Run(o.name, func(b *testing.B) {
			if err := querytest.Evict(path); err != nil {
				b.Skip(err)
			}
			ctx := context.Background()
			var warm time.Duration
			var disk, cpu int64
			var db *sql.DB
			for b.Loop() {
				b.StopTimer()
				if db != nil {
					db.Close()
				}
				if err := querytest.Evict(path); err != nil {
					b.Fatal(err)
				}
				db = query.OpenDB(path, query.Options{})
				d, c := querytest.ReadBytes(), cpuTime()
				b.StartTimer()
				if err := o.op(ctx, db); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				disk += querytest.ReadBytes() - d
				cpu += int64(cpuTime() - c)
				start := time.Now()
				if err := o.op(ctx, db); err != nil {
					b.Fatal(err)
				}
				warm += time.Since(start)
				b.StartTimer()
			}
			db.Close()
			b.ReportMetric(float64(cpu)/1e6/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(disk)/1e6/float64(b.N), "disk-MB/op")
			b.ReportMetric(float64(warm.Microseconds())/1e3/float64(b.N), "warm-ms/op")
		})
	}
}
