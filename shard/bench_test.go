package shard

import (
	"context"
	"database/sql/driver"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func benchEvent(i int) Event {
	return Event{
		EventType: "level_complete", Application: "My Game", Version: "1.0.3", Platform: "Windows",
		UserID:    fmt.Sprintf("%08x", i%5000),
		SessionID: "1df3ede7c90f9e9d8738aa6cdc1a75ec437da75b0536301b273b9d09a4d017ee",
		Value:     `{"level":3,"time":41.25}`, Time: time.Now(),
	}
}

// BenchmarkCeiling is the SQLite ceiling for this schema on this machine: the
// same rows through the same prepared statement and connection settings as
// the writer, 1000 rows a transaction, with nothing in front. deploy/bench
// reads its events/s.
func BenchmarkCeiling(b *testing.B) {
	o := Options{}.withDefaults()
	c, _, err := openConn(filepath.Join(b.TempDir(), "ceiling.db"), o)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	st, err := c.Prepare(insertSQL)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	stmt := st.(driver.StmtExecContext)
	const perTx = 1000
	ctx := context.Background()
	args := make([]driver.NamedValue, 8)
	for i := range args {
		args[i].Ordinal = i + 1
	}
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		if _, err := c.Exec("BEGIN IMMEDIATE", nil); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < perTx; i++ {
			e := benchEvent(n*perTx + i)
			for j, v := range []string{e.EventType, e.Application, e.Version, e.Platform, e.UserID, e.SessionID, e.Value, e.Time.UTC().Format(TimeFormat)} {
				args[j].Value = v
			}
			if _, err := stmt.ExecContext(ctx, args); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := c.Exec("COMMIT", nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*perTx)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkWriter measures DB.Write from many goroutines, each waiting for
// its commit as a request handler does, with requests of 1 and 100 events.
func BenchmarkWriter(b *testing.B) {
	for _, per := range []int{1, 100} {
		b.Run(fmt.Sprintf("events=%d", per), func(b *testing.B) {
			db := New(filepath.Join(b.TempDir(), "writer.db"), Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err := db.Open(); err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			b.SetParallelism(64)
			var next atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				hint := int(next.Add(1))
				evs := make([]Event, per)
				for pb.Next() {
					for i := range evs {
						evs[i] = benchEvent(hint*per + i)
					}
					if err := db.Write(hint, evs); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
