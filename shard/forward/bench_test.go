package forward_test

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/forward"
	"github.com/gocolytics/gocolytics/shard/forward/pgtest"
)

// selfCPU is this process's CPU time, user and system.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// realisticEvents are n events of 10,000 players over the last 60 days:
// each player's session id, ten event types, five versions, four
// platforms, values as the Godot plugin sends them (one in twenty holds
// Godot's 1e99999 for inf, which PostgreSQL gets converted).
func realisticEvents(n int) []shard.Event {
	r := rand.New(rand.NewPCG(1, 2))
	types := []string{"startup", "level_start", "level_end", "death", "purchase", "settings", "tutorial_start", "tutorial_end", "ad_view", "shutdown"}
	versions := []string{"1.0.0", "1.0.1", "1.1.0", "1.2.0", "2.0.0"}
	platforms := []string{"Windows", "Linux", "Android", "Web"}
	values := []string{`{}`, `{"level":3}`, `{"level":3,"score":1234,"time":41.25}`, `{"resolution":"1920x1080","fullscreen":true}`,
		`{"inventory":["sword","shield"],"gold":1234}`, `{"fps":60}`, `{"item":"gem_pack","price":4.99}`, `{"level":12,"cause":"lava"}`,
		`{"level":5,"time":12.5}`, `{"ad":"interstitial"}`, `{"a":1}`, `{"b":2}`, `{"c":3}`, `{"d":4}`, `{"e":5}`, `{"f":6}`, `{"g":7}`, `{"h":8}`, `{"i":9}`, `{"fps":1e99999}`}
	start := time.Now().UTC().AddDate(0, 0, -60)
	evs := make([]shard.Event, n)
	for i := range evs {
		p := r.IntN(10000)
		evs[i] = shard.Event{EventType: types[r.IntN(len(types))], Application: "My Game", Version: versions[p%len(versions)],
			Platform: platforms[p%len(platforms)], UserID: fmt.Sprintf("%08x", p*2654435761%(1<<32)),
			SessionID: fmt.Sprintf("%064x", p*1000+r.IntN(20)), Value: values[r.IntN(len(values))],
			Time: start.Add(time.Duration(i) * 60 * 24 * time.Hour / time.Duration(n))}
	}
	return evs
}

// BenchmarkForwarder_Backlog is how fast one forwarder catches up a
// backlog: a node's database of 300,000 realistic rows (two months, so
// three partitions) forwarded into an empty PostgreSQL with its durable
// defaults (fsync on), on the same machine. It reports rows/s.
//
//	flock /tmp/gocolytics-bench.lock go test -run '^$' -bench Backlog -benchtime 1x -count 3 ./shard/forward
func BenchmarkForwarder_Backlog(b *testing.B) {
	const rows = 300_000
	srv := pgtest.StartDurable(b)
	db := shard.New(filepath.Join(b.TempDir(), "node.db"), shard.Options{}, nil)
	if err := db.Open(); err != nil {
		b.Fatal(err)
	}
	evs := realisticEvents(rows)
	for i := 0; i < rows; i += 10000 {
		if err := db.Write(0, evs[i:i+10000]); err != nil {
			b.Fatal(err)
		}
	}
	db.Close()
	b.ResetTimer()
	var total, pgCPU, goCPU time.Duration
	for n := range b.N {
		url := srv.CreateDB(b, fmt.Sprintf("backlog_%d", n))
		f := forward.New(forward.Config{SQLitePath: db.Path(), PostgresURL: url, NodeID: "bench"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		t0, pg0, go0 := time.Now(), srv.CPUTime(), selfCPU()
		if err := f.Start(); err != nil {
			b.Fatal(err)
		}
		for f.Status().Position < rows {
			time.Sleep(5 * time.Millisecond)
		}
		total += time.Since(t0)
		pgCPU += srv.CPUTime() - pg0
		goCPU += selfCPU() - go0
		f.Close()
	}
	b.ReportMetric(float64(rows*b.N)/total.Seconds(), "rows/s")
	// CPU per row, which other load on the machine barely moves: the
	// PostgreSQL server's (all its processes) and the forwarder's.
	b.ReportMetric(float64(pgCPU.Microseconds())/float64(rows*b.N), "pg-cpu-us/row")
	b.ReportMetric(float64(goCPU.Microseconds())/float64(rows*b.N), "fwd-cpu-us/row")
}
