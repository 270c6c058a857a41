package shard

import (
	"database/sql"
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
// versions, 5 platforms, 60-120 byte values with four numbers) written in
// batches of 100 and merged every 10,000 events (a merge a second at
// 10,000 events/s), into a new database, without and with the summaries,
// and with 1, 4, 8 and 16 value fields registered (valuefield.go;
// "-full": MaxValueFields of them). It reports the process's
// CPU time per event, the bytes it wrote per event (/proc/self/io
// write_bytes: WAL, checkpoints and the file, after closing) and the file's
// size per event. A variant above MaxValueFields raises the bound for the
// benchmark (-overbound); -count runs the variants in turn, for medians:
//
//	flock /tmp/gocolytics-bench.lock go test -run '^$' -bench Summaries_Ingest -count 3 ./shard/
func BenchmarkSummaries_Ingest(b *testing.B) {
	events := realisticEvents(ingestBenchEvents)
	type variant struct {
		name     string
		interval time.Duration
		fields   int
	}
	variants := []variant{{"base", -1, 0}, {"summaries", 0, 0}}
	for _, n := range []int{1, 4, 8, 16} {
		name := fmt.Sprintf("summaries+%dfields", n)
		switch {
		case n == MaxValueFields:
			name += "-full"
		case n > MaxValueFields:
			name += "-overbound"
		}
		variants = append(variants, variant{name, 0, n})
	}
	defer overBound(len(benchFields))()
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			var cpu, written, size float64
			for b.Loop() {
				path := filepath.Join(b.TempDir(), "ingest.db")
				db := New(path, Options{MergeInterval: time.Hour, SummaryInterval: v.interval}, nil)
				if err := db.Open(); err != nil {
					b.Fatal(err)
				}
				registerBenchFields(b, db, v.fields)
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

// benchFields are the value fields the benchmarks register, the four
// numbers of the four commonest types of realisticEvents in turn
// (level_end is about 39 % of the events, level_start 24 %, item_pickup
// 15 %, enemy_killed 9 %): 4 fields are level_end's, 16 are on 86 % of the
// events.
var benchFields = func() (out [][2]string) {
	for _, t := range []string{"level_end", "level_start", "item_pickup", "enemy_killed"} {
		for _, f := range []string{"score", "time", "coins", "level"} {
			out = append(out, [2]string{t, f})
		}
	}
	return out
}()

// overBound raises MaxValueFields to at least n; the returned func puts
// it back.
func overBound(n int) func() {
	was := MaxValueFields
	MaxValueFields = max(was, n)
	return func() { MaxValueFields = was }
}

// registerBenchFields registers the first n of benchFields in db.
func registerBenchFields(b *testing.B, db *DB, n int) {
	for _, f := range benchFields[:min(n, len(benchFields))] {
		if err := db.RegisterValueField(b.Context(), "Bench Game", f[0], f[1], `$."`+f[1]+`"`); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSummaries_ValuePass measures one summary pass alone, run by
// the benchmark on the writer's connection with no writer running (no
// group commits, checkpoints or other work in the process meanwhile):
// 100,000 realistic events (realisticEvents) written unsummarised, then 0,
// 1, 4, 8 or 16 value fields (benchFields; above MaxValueFields the bound
// is raised for the benchmark) registered and one pass over all of them, timed (pass-ms: wall;
// pass-cpu-ms: the process's CPU time). What the fields add to a pass is
// the difference to fields=0.
//
//	flock /tmp/gocolytics-bench.lock go test -run '^$' -bench Summaries_ValuePass -benchtime 3x ./shard/
func BenchmarkSummaries_ValuePass(b *testing.B) {
	built := filepath.Join(b.TempDir(), "events.db")
	db := New(built, Options{MergeInterval: -1, SummaryInterval: -1, Synchronous: "NORMAL"}, nil)
	if err := db.Open(); err != nil {
		b.Fatal(err)
	}
	events := realisticEvents(DefaultSummaryRows)
	for i := 0; i < len(events); i += 1000 {
		if err := db.Write(i, events[i:i+1000]); err != nil {
			b.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	defer overBound(len(benchFields))()
	for _, n := range []int{0, 1, 4, 8, 16} {
		b.Run(fmt.Sprintf("fields=%d", n), func(b *testing.B) {
			var ms, cpu float64
			for range b.N {
				path := filepath.Join(b.TempDir(), "pass.db")
				copyFile(b, built, path)
				db := New(path, Options{MergeInterval: -1, SummaryInterval: time.Hour}, nil)
				c, _, err := openConn(path, db.opts)
				if err != nil {
					b.Fatal(err)
				}
				db.conn = c
				if err := db.openSummaries(); err != nil {
					b.Fatal(err)
				}
				for _, f := range benchFields[:n] {
					if err := db.registerValueField(valueAsk{"Bench Game", f[0], f[1], `$."` + f[1] + `"`, nil}); err != nil {
						b.Fatal(err)
					}
				}
				cpu0, start := processCPU(), time.Now()
				if _, more, err := db.summaryChunk(1 << 30); err != nil || more {
					b.Fatal(err, more)
				}
				ms += float64(time.Since(start).Microseconds()) / 1000
				cpu += float64(processCPU()-cpu0) / 1e6
				var built int64
				if n > 0 {
					if built, _, err = queryInt64(c, `SELECT min(built_id) FROM stats_value_field`); err != nil || built != int64(len(events)) {
						b.Fatalf("fields built to %d, %v; want %d", built, err, len(events))
					}
				}
				if err := c.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(ms/float64(b.N), "pass-ms")
			b.ReportMetric(cpu/float64(b.N), "pass-cpu-ms")
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
			Value: fmt.Sprintf(`{"score":%d,"time":%.3f,"coins":%d,"level":%d,"pad":"%s"}`, rng.IntN(10000), rng.Float64()*300,
				rng.IntN(500), 1+rng.IntN(40), strings.Repeat("x", 10+rng.IntN(50))), Time: t})
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

// summarizeAndClose runs db's summary passes, closes db and returns the
// milliseconds the passes took.
func summarizeAndClose(b *testing.B, db *DB) float64 {
	b.Helper()
	start := time.Now()
	if err := db.Summarize(b.Context()); err != nil {
		b.Fatal(err)
	}
	ms := float64(time.Since(start).Microseconds()) / 1000
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	return ms
}

// BenchmarkSummaries_Fold measures the writer's time for the pass that
// folds a finished day (summary.go, foldDone): a day of rows pass rows
// (a quarter as many groups, each in four passes of 10,000 rows) is built
// through the writer, then one row of the next day comes and the timed
// Summarize is the pass that folds it: unbounded (FoldRows < 0, what every
// pass did before the bound) and with the default bound (FoldRows 0: 2 ×
// SummaryRows = 200,000: the largest day folded; a larger one stays
// unfolded). "pass" is the yardstick: a full pass of SummaryRows (100,000)
// realistic rows into an empty database.
//
//	flock /tmp/gocolytics-bench.lock go test -run '^$' -bench Summaries_Fold -benchtime 1x -count 2 ./shard/
func BenchmarkSummaries_Fold(b *testing.B) {
	b.Run("pass", func(b *testing.B) {
		events := realisticEvents(DefaultSummaryRows)
		var ms float64
		for range b.N {
			db := New(filepath.Join(b.TempDir(), "pass.db"), Options{MergeInterval: -1, SummaryInterval: time.Hour}, nil)
			if err := db.Open(); err != nil {
				b.Fatal(err)
			}
			for i := 0; i < len(events); i += 1000 {
				if err := db.Write(i, events[i:i+1000]); err != nil {
					b.Fatal(err)
				}
			}
			ms += summarizeAndClose(b, db)
		}
		b.ReportMetric(ms/float64(b.N), "pass-ms")
	})
	for _, rows := range []int{50_000, 200_000, 300_000, 1_000_000} {
		built := filepath.Join(b.TempDir(), "day.db")
		buildFoldDay(b, built, rows)
		for _, v := range []struct {
			name     string
			foldRows int
		}{{"unbounded", -1}, {"bounded", 0}} {
			b.Run(fmt.Sprintf("rows=%d/%s", rows, v.name), func(b *testing.B) {
				var ms float64
				for range b.N {
					path := filepath.Join(b.TempDir(), "fold.db")
					copyFile(b, built, path)
					db := New(path, Options{MergeInterval: -1, SummaryInterval: time.Hour, FoldRows: v.foldRows}, nil)
					if err := db.Open(); err != nil {
						b.Fatal(err)
					}
					next := foldDayEvent(0, 1)
					next.Time = next.Time.Add(24 * time.Hour)
					if err := db.Write(0, []Event{next}); err != nil {
						b.Fatal(err)
					}
					ms += summarizeAndClose(b, db)
					var left int64
					c := openSQL(b, path)
					if err := c.QueryRow("SELECT count(*) FROM stats_activity WHERE day = '2026-11-28' AND pass >= 0").Scan(&left); err != nil {
						b.Fatal(err)
					}
					c.Close()
					if unfolded := left > 0; unfolded != (v.foldRows >= 0 && rows > 2*DefaultSummaryRows) {
						b.Fatalf("%d pass rows of the finished day left after the pass", left)
					}
				}
				b.ReportMetric(ms/float64(b.N), "fold-ms")
			})
		}
	}
}

// foldDayEvent is the i-th of n events of 2026-11-28, in n/4 groups.
func foldDayEvent(i, n int) Event {
	g := i % max(n/4, 1)
	return Event{EventType: fmt.Sprintf("type-%d", g%10), Application: "Bench Game", Version: "1.0.0", Platform: "Linux",
		UserID: fmt.Sprintf("player-%06d", g%5000), SessionID: fmt.Sprintf("session-%08d", g), Value: `{"score":1}`,
		Time: time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * (24 * time.Hour / time.Duration(n)))}
}

// buildFoldDay writes a day of n events through the writer, summarised in
// passes of 10,000 rows (each event a pass row of its own), and closes it.
func buildFoldDay(b *testing.B, path string, n int) {
	db := New(path, Options{MergeInterval: -1, SummaryInterval: time.Hour, SummaryRows: 10_000, FoldRows: -1, Synchronous: "NORMAL"}, nil)
	if err := db.Open(); err != nil {
		b.Fatal(err)
	}
	batch := make([]Event, 0, 1000)
	for i := range n {
		batch = append(batch, foldDayEvent(i, n))
		if len(batch) == cap(batch) || i == n-1 {
			if err := db.Write(i, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
		if (i+1)%10_000 == 0 {
			if err := db.Summarize(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := db.Summarize(b.Context()); err != nil {
		b.Fatal(err)
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	c := openSQL(b, path)
	defer c.Close()
	var passRows int64
	var days int64
	if err := c.QueryRow("SELECT count(*), (SELECT count(*) FROM stats_day) FROM stats_activity WHERE pass >= 0").Scan(&passRows, &days); err != nil ||
		passRows != int64(n) || days != 1 {
		b.Fatalf("built day: %d pass rows in %d days, %v; want %d in 1", passRows, days, err, n)
	}
}

// copyFile copies the closed database at from (and its WAL, if any) to to.
func copyFile(b *testing.B, from, to string) {
	for _, suffix := range []string{"", "-wal"} {
		data, err := os.ReadFile(from + suffix)
		if os.IsNotExist(err) && suffix != "" {
			continue
		}
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(to+suffix, data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
}

// openSQL opens the database at path with database/sql.
func openSQL(b *testing.B, path string) *sql.DB {
	c, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		b.Fatal(err)
	}
	return c
}
