package shard

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ingestBenchEvents is how many events each run writes.
var ingestBenchEvents = 200_000

// BenchmarkSummaries_Ingest measures what keeping the summary tables costs
// the writer: the same realistic events (2,000 players, 10 event types, 4
// versions, 5 platforms, 60-120 byte values) written in batches of 100 and
// merged every 10,000 events (a merge a second at 10,000 events/s), into a
// new database, without and with the summaries. It reports the process's
// CPU time per event, the bytes it wrote per event (/proc/self/io
// write_bytes: WAL, checkpoints and the file, after closing) and the file's
// size per event. Run the two alternately, for medians:
//
//	flock /tmp/gocolytics-bench.lock go test -run '^$' -bench Summaries_Ingest -count 3 ./shard/
func BenchmarkSummaries_Ingest(b *testing.B) {
	events := realisticEvents(ingestBenchEvents)
	for _, v := range []struct {
		name     string
		interval time.Duration
	}{{"base", -1}, {"summaries", 0}} {
		b.Run(v.name, func(b *testing.B) {
			var cpu, written, size float64
			for b.Loop() {
				path := filepath.Join(b.TempDir(), "ingest.db")
				db := New(path, Options{MergeInterval: time.Hour, SummaryInterval: v.interval}, nil)
				if err := db.Open(); err != nil {
					b.Fatal(err)
				}
				cpu0, w0 := processCPU(), writeBytes(b)
				for i := 0; i < len(events); i += 100 {
					if err := db.Write(i, events[i:i+100]); err != nil {
						b.Fatal(err)
					}
					if (i+100)%10_000 == 0 {
						if err := db.Merge(b.Context()); err != nil {
							b.Fatal(err)
						}
					}
				}
				if err := db.Close(); err != nil {
					b.Fatal(err)
				}
				cpu += float64(processCPU() - cpu0)
				written += float64(writeBytes(b) - w0)
				st, err := os.Stat(path)
				if err != nil {
					b.Fatal(err)
				}
				size += float64(st.Size())
			}
			n := float64(b.N * len(events))
			b.ReportMetric(cpu/n, "cpu-ns/event")
			b.ReportMetric(written/n, "written-B/event")
			b.ReportMetric(size/n, "file-B/event")
		})
	}
}

// realisticEvents are n events of a game played now: players in sessions
// of tens of events a few seconds apart, in time order.
func realisticEvents(n int) []Event {
	rng := rand.New(rand.NewPCG(5, 5))
	types := []string{"level_end", "level_start", "item_pickup", "enemy_killed", "start", "menu_open",
		"tutorial_start", "tutorial_end", "purchase", "crash"}
	platforms := []string{"Windows", "Android", "Linux", "macOS", "Web"}
	t := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	out := make([]Event, 0, n)
	type session struct {
		player, id, left int
	}
	live := make([]session, 200)
	next := 0
	for len(out) < n {
		k := rng.IntN(len(live))
		s := &live[k]
		if s.left == 0 {
			*s = session{player: rng.IntN(2000), id: next, left: 10 + rng.IntN(60)}
			next++
		}
		s.left--
		et := types[min(int(rng.ExpFloat64()*2), len(types)-1)]
		out = append(out, Event{EventType: et, Application: "Bench Game", Version: fmt.Sprintf("1.%d.0", s.player%4),
			Platform: platforms[s.player%len(platforms)], UserID: fmt.Sprintf("player-%06d", s.player),
			SessionID: fmt.Sprintf("session-%08d", s.id),
			Value:     fmt.Sprintf(`{"score":%d,"pad":"%s"}`, rng.IntN(10000), strings.Repeat("x", 40+rng.IntN(60))), Time: t})
		t = t.Add(time.Duration(rng.IntN(200)) * time.Millisecond)
	}
	return out
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// writeBytes is this process's write_bytes from /proc/self/io.
func writeBytes(tb testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		tb.Skipf("no /proc/self/io: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	tb.Skip("no write_bytes in /proc/self/io")
	return 0
}
