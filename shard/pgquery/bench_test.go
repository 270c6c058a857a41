package pgquery_test

import (
	"context"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard/forward"
	"github.com/gocolytics/gocolytics/shard/forward/pgtest"
	"github.com/gocolytics/gocolytics/shard/pgquery"
	"github.com/gocolytics/gocolytics/shard/query"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
)

// smallGame is shard/query's "small game": 500,000 events over 90 days
// from 2,000 players.
var smallGame = querytest.Realistic{Events: 500_000, Players: 2_000, Days: 90,
	Last: time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC), Seed: 2}

// BenchmarkSource compares the stats API's heaviest answers from the
// node's SQLite file and from PostgreSQL holding the same rows (forwarded
// first), in the same run. Run with:
//
//	flock /tmp/gocolytics-bench.lock go test -run '^$' -bench Source -benchtime 5x -timeout 20m ./shard/pgquery/
func BenchmarkSource(b *testing.B) {
	path := querytest.CachedRealistic(b, smallGame)
	url := pgtest.Start(b).CreateDB(b, "bench")
	f := forward.New(forward.Config{SQLitePath: path, PostgresURL: url, NodeID: "bench", Interval: 50 * time.Millisecond},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := f.Start(); err != nil {
		b.Fatal(err)
	}
	// Generate stops short of Events: wait until the lag is 0.
	deadline := time.Now().Add(5 * time.Minute)
	for s := f.Status(); s.Position == 0 || s.LagEvents != 0; s = f.Status() {
		if time.Now().After(deadline) {
			b.Fatalf("forwarding the rows: %+v after 5 minutes", s)
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.Close()
	pg, err := pgquery.Open(url, query.Options{Timeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer pg.Close()
	if _, err := pg.QueryContext(context.Background(), "ANALYZE"); err != nil {
		b.Fatal(err)
	}
	sqlite, err := query.Open(path, query.Options{Timeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer sqlite.Close()

	last30 := query.Filter{Application: "Bench Game", Since: smallGame.Last.AddDate(0, 0, -29), Until: smallGame.Last}
	ends := last30
	ends.EventType = "level_end"
	ctx := context.Background()
	for _, q := range []struct {
		name string
		do   func(s query.Source) error
	}{
		{"stats-30d", func(s query.Source) error { _, err := s.Stats(ctx, last30, smallGame.Last); return err }},
		{"funnel-30d", func(s query.Source) error {
			_, err := s.Funnel(ctx, last30, []string{"start", "level_start", "level_end", "purchase"})
			return err
		}},
		{"value-30d", func(s query.Source) error { _, err := s.Value(ctx, ends, "stats.time"); return err }},
		{"recent-50", func(s query.Source) error { _, err := s.Recent(ctx, "Bench Game", 50); return err }},
		{"export-level_end-7d", func(s query.Source) error {
			_, err := exportAll(s, query.ExportFilter{Application: "Bench Game", EventType: "level_end", Since: smallGame.Last.AddDate(0, 0, -6)})
			return err
		}},
		// Every row, unfiltered: 250 chunks of 2,000, each read on from
		// the last id (through the index on id since schema version 3).
		{"export-all", func(s query.Source) error {
			_, err := exportAll(s, query.ExportFilter{})
			return err
		}},
	} {
		for _, src := range []struct {
			name string
			s    query.Source
		}{{"sqlite", sqlite}, {"postgres", pg}} {
			b.Run(q.name+"/"+src.name, func(b *testing.B) {
				cpu := cpuTime()
				for b.Loop() {
					if err := q.do(src.s); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(cpuTime()-cpu)/float64(time.Millisecond)/float64(b.N), "client-cpu-ms/op")
			})
		}
	}
}

// exportAll reads a whole export and returns its size.
func exportAll(s query.Source, f query.ExportFilter) (int, error) {
	st := s.NewExport(f, query.NDJSON)
	n := 0
	for {
		b, err := st.Next(context.Background())
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n += len(b)
	}
}

// cpuTime is the CPU time this process has used so far (PostgreSQL's
// work is in its own processes, not in it).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
