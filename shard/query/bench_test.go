package query_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"syscall"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard/query"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
)

// benchGame is the benchmark database (querytest.BenchGame).
var benchGame = querytest.BenchGame

// last30 is the last 30 days of benchGame.
func last30() query.Filter {
	return query.Filter{Application: "Bench Game", Since: benchGame.Last.AddDate(0, 0, -29), Until: benchGame.Last}
}

// cpuTime is the CPU time this process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds the CPU time per operation, which a busy shared machine
// inflates far less than the wall time: call it with the CPU time at the
// start of the loop.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// both runs bench on the raw database (the statistics read its rows, as
// before the summary tables) and on its copy with the summaries, in the
// same run. Each reports the bytes it had read from storage (disk-MB/op):
// a round that finds the database's pages out of the page cache reads
// hundreds of megabytes and takes two to five times as long
// (BenchmarkCold_30Days, DESIGN.md "The first request after a pause").
func both(b *testing.B, r querytest.Realistic, bench func(b *testing.B, db *sql.DB)) {
	run := func(b *testing.B, path string) {
		db := querytest.OpenReadOnly(b, path)
		disk := querytest.ReadBytes()
		bench(b, db)
		reportDisk(b, disk)
	}
	b.Run("raw", func(b *testing.B) { run(b, querytest.CachedRealistic(b, r)) })
	b.Run("summaries", func(b *testing.B) { run(b, querytest.CachedSummarised(b, r)) })
}

// reportDisk adds the bytes read from storage per operation since start
// (querytest.ReadBytes), where the system counts them.
func reportDisk(b *testing.B, start int64) {
	if start >= 0 && b.N > 0 {
		b.ReportMetric(float64(querytest.ReadBytes()-start)/1e6/float64(b.N), "disk-MB/op")
	}
}

// Run with: flock /tmp/gocolytics-bench.lock go test -run '^$' -bench . -benchtime 3x ./shard/query/
// (the first run writes the databases into the temporary folder, minutes).
func BenchmarkComputeStats_30Days(b *testing.B) {
	both(b, benchGame, func(b *testing.B, db *sql.DB) {
		cpu := cpuTime()
		defer func() { reportCPU(b, cpu) }()
		for b.Loop() {
			st, err := query.ComputeStats(context.Background(), db, last30(), benchGame.Last, "event_type", "version")
			if err != nil || st.Summary.Users == 0 {
				b.Fatal(err, st.Summary)
			}
		}
	})
}

func BenchmarkComputeStats_7Days(b *testing.B) {
	both(b, benchGame, func(b *testing.B, db *sql.DB) {
		f := last30()
		f.Since = f.Until.AddDate(0, 0, -6)
		cpu := cpuTime()
		defer func() { reportCPU(b, cpu) }()
		for b.Loop() {
			st, err := query.ComputeStats(context.Background(), db, f, benchGame.Last)
			if err != nil || st.Summary.MAU == 0 {
				b.Fatal(err, st.Summary)
			}
		}
	})
}

func BenchmarkComputeFunnel_30Days(b *testing.B) {
	both(b, benchGame, func(b *testing.B, db *sql.DB) {
		cpu := cpuTime()
		defer func() { reportCPU(b, cpu) }()
		for b.Loop() {
			f, err := query.ComputeFunnel(context.Background(), db, last30(), []string{"start", "level_start", "level_end", "purchase"})
			if err != nil || f[0].Users == 0 {
				b.Fatal(err, f)
			}
		}
	})
}

func BenchmarkComputeValue_30Days(b *testing.B) {
	both(b, benchGame, func(b *testing.B, db *sql.DB) {
		f := last30()
		f.EventType = "level_end"
		cpu := cpuTime()
		defer func() { reportCPU(b, cpu) }()
		for b.Loop() {
			v, err := query.ComputeValue(context.Background(), db, f, "stats.time")
			if err != nil || v[0].Count == 0 {
				b.Fatal(err)
			}
		}
	})
	// The field registered and filled in (shard's field registry).
	b.Run("registry", func(b *testing.B) {
		path, err := query.JSONPath("stats.time")
		if err != nil {
			b.Fatal(err)
		}
		db := querytest.OpenReadOnly(b, querytest.CachedRegistered(b, benchGame, "Bench Game", "level_end", "stats.time", path))
		f := last30()
		f.EventType = "level_end"
		disk, reads := querytest.ReadBytes(), query.ValueFromFields()
		cpu := cpuTime()
		for b.Loop() {
			v, err := query.ComputeValue(context.Background(), db, f, "stats.time")
			if err != nil || v[0].Count == 0 {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpu)
		reportDisk(b, disk)
		if query.ValueFromFields() == reads {
			b.Fatal("not read from the registry's summary")
		}
		// The same answer as the rows (the database without the field).
		got, err := query.ComputeValue(context.Background(), db, f, "stats.time")
		if err != nil {
			b.Fatal(err)
		}
		want, err := query.ComputeValue(context.Background(), querytest.OpenReadOnly(b, querytest.CachedSummarised(b, benchGame)), f, "stats.time")
		if err != nil {
			b.Fatal(err)
		}
		querytest.EqualJSON(b, "registry", got, string(must(json.Marshal(want))))
	})
}

func BenchmarkComputeSeries_30Days(b *testing.B) {
	both(b, benchGame, func(b *testing.B, db *sql.DB) {
		cpu := cpuTime()
		defer func() { reportCPU(b, cpu) }()
		for b.Loop() {
			if _, err := query.ComputeSeries(context.Background(), db, last30(), "version"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkApplications(b *testing.B) {
	both(b, benchGame, func(b *testing.B, db *sql.DB) {
		cpu := cpuTime()
		defer func() { reportCPU(b, cpu) }()
		for b.Loop() {
			if _, err := query.Applications(context.Background(), db); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// smallGame is a small indie game's database: 500,000 events over 90 days
// from 2,000 players.
var smallGame = querytest.Realistic{Events: 500_000, Players: 2_000, Days: 90,
	Last: time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC), Seed: 2}

func BenchmarkComputeStats_30Days_Small(b *testing.B) {
	db := querytest.OpenReadOnly(b, querytest.CachedRealistic(b, smallGame))
	f := last30()
	cpu := cpuTime()
	defer func() { reportCPU(b, cpu) }()
	for b.Loop() {
		st, err := query.ComputeStats(context.Background(), db, f, smallGame.Last, "event_type", "version")
		if err != nil || st.Summary.Users == 0 {
			b.Fatal(err, st.Summary)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
