package main

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
	"github.com/gocolytics/gocolytics/shard"
)

// The data-out benchmarks measure what the issue bounds: memory while
// exporting millions of rows, and ingest latency while retention deletes a
// million. Run one at a time, under the machine's benchmark lock:
//
//	flock /tmp/gocolytics-bench.lock go test ./cmd/gocolytics -run '^$' -bench DataOut_Export -benchtime 1x
//	flock /tmp/gocolytics-bench.lock go test ./cmd/gocolytics -run '^$' -bench DataOut_Retention -benchtime 1x
//
// GOCOLYTICS_BENCH_ROWS changes the number of rows (5,000,000 for the
// export, 1,000,000 for retention by default). The databases are built once
// into the temporary folder and reused.

func benchRows(def int) int {
	if n, err := strconv.Atoi(os.Getenv("GOCOLYTICS_BENCH_ROWS")); err == nil && n > 0 {
		return n
	}
	return def
}

// benchDB returns a database of n realistic rows (gctest.NewEvent: 5,000
// players, 4 sessions each, 6 event types, 3 versions, 6 platforms) whose
// time is at, built once and kept in the temporary folder.
func benchDB(b *testing.B, name string, n int, at func(i int) time.Time) string {
	b.Helper()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("gocolytics-bench-%s-%d.db", name, n))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	tmp := path + ".building"
	os.Remove(tmp)
	db := shard.New(tmp, shard.Options{Synchronous: "NORMAL"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := db.Open(); err != nil {
		b.Fatal(err)
	}
	batch := make([]shard.Event, 0, 20000)
	for i := range n {
		batch = append(batch, gctest.NewEvent(fmt.Sprintf("%s-%d", name, i)).Row(at(i)))
		if len(batch) == cap(batch) || i == n-1 {
			if err := db.Write(0, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkDataOut_Export: the server's resident size while it streams an
// export of every row over HTTP, and the subcommand's peak resident size.
func BenchmarkDataOut_Export(b *testing.B) {
	n := benchRows(5_000_000)
	start := time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)
	path := benchDB(b, "export", n, func(i int) time.Time { return start.Add(time.Duration(i) * 90 * 24 * time.Hour / time.Duration(n)) })
	for range b.N {
		p := gctest.Start(b, path, "--admin-keys", `["bench-admin"]`)
		pid := p.PID()
		// Warm up: the first small export opens the read pool.
		req, _ := http.NewRequest("GET", p.URL("/v1.0/export?limit=10"), nil)
		req.Header.Set("Authorization", "Bearer bench-admin")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		before := procStatusKiB(pid, "VmRSS")
		var peak int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				peak = max(peak, procStatusKiB(pid, "VmRSS"))
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		})
		req, _ = http.NewRequest("GET", p.URL("/v1.0/export"), nil)
		req.Header.Set("Authorization", "Bearer bench-admin")
		t0 := time.Now()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		lines := 0
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines++
		}
		resp.Body.Close()
		took := time.Since(t0)
		close(stop)
		wg.Wait()
		if lines != n {
			b.Fatalf("exported %d rows, want %d", lines, n)
		}
		b.ReportMetric(float64(n)/took.Seconds(), "http-rows/s")
		b.ReportMetric(float64(before)/1024, "server-rss-before-MiB")
		b.ReportMetric(float64(peak-before)/1024, "server-rss-growth-MiB")

		cmd := exec.Command(gctest.Binary(b), "export", "--env-file", gctest.EnvFile(b, ""), "--sqlite-file-path", path, "--format", "csv", "--output", os.DevNull)
		t0 = time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("export: %v %s", err, out)
		}
		b.ReportMetric(float64(n)/time.Since(t0).Seconds(), "cli-csv-rows/s")
		b.ReportMetric(float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss)/1024, "cli-maxrss-MiB")
		p.Stop(b)
	}
}

// latencies posts single events from clients goroutines until stop and
// returns every request's latency; any answer but 204 fails.
func latencies(b *testing.B, addr string, clients int, stop <-chan struct{}) []time.Duration {
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			client := &http.Client{Timeout: 30 * time.Second}
			var mine []time.Duration
			for i := 0; ; i++ {
				select {
				case <-stop:
					mu.Lock()
					all = append(all, mine...)
					mu.Unlock()
					return
				default:
				}
				body := gctest.NewEvent(fmt.Sprintf("lat-%d-%d", c, i)).JSON()
				t0 := time.Now()
				resp, err := client.Post("http://"+addr+"/v1.0/event", "application/json", strings.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mine = append(mine, time.Since(t0))
				if resp.StatusCode != 204 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
	}
	wg.Wait()
	slices.Sort(all)
	return all
}

func pct(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	return float64(d[min(len(d)-1, int(float64(len(d))*p))].Microseconds()) / 1000
}

// BenchmarkDataOut_Retention: ingest latency (8 clients, single events)
// while retention deletes a million rows from 2020 at start, against the
// same load on the same database without retention.
func BenchmarkDataOut_Retention(b *testing.B) {
	n := benchRows(1_000_000)
	old := time.Date(2020, 3, 1, 0, 0, 0, 0, time.UTC)
	tmpl := benchDB(b, "retention", n, func(i int) time.Time { return old.Add(time.Duration(i) * time.Second) })
	copyDB := func() string {
		dst := filepath.Join(b.TempDir(), "events.db")
		src, _ := os.ReadFile(tmpl)
		if err := os.WriteFile(dst, src, 0o600); err != nil {
			b.Fatal(err)
		}
		return dst
	}
	for range b.N {
		// Baseline: the same load for as long, no delete.
		var baseline []time.Duration
		var deleteTook time.Duration
		{
			p := gctest.Start(b, copyDB(), "--retention-days", "30")
			stop := make(chan struct{})
			done := make(chan []time.Duration)
			t0 := time.Now()
			go func() { done <- latencies(b, p.Addr, 8, stop) }()
			// A million rows take longer than WaitFor's limit.
			for deadline := time.Now().Add(10 * time.Minute); gctest.Metric(p.Addr, `gocolytics_rows_deleted_total{reason="retention"}`) < float64(n); {
				if time.Now().After(deadline) {
					b.Fatal("the retention delete did not end within 10 minutes")
				}
				time.Sleep(50 * time.Millisecond)
			}
			deleteTook = time.Since(t0)
			close(stop)
			during := <-done
			p.Stop(b)
			b.ReportMetric(deleteTook.Seconds(), "delete-s")
			b.ReportMetric(pct(during, 0.50), "during-p50-ms")
			b.ReportMetric(pct(during, 0.99), "during-p99-ms")
			b.ReportMetric(pct(during, 1), "during-max-ms")
			b.ReportMetric(float64(len(during))/deleteTook.Seconds(), "during-req/s")
		}
		{
			p := gctest.Start(b, copyDB())
			stop := make(chan struct{})
			done := make(chan []time.Duration)
			go func() { done <- latencies(b, p.Addr, 8, stop) }()
			time.Sleep(deleteTook)
			close(stop)
			baseline = <-done
			p.Stop(b)
			b.ReportMetric(pct(baseline, 0.50), "baseline-p50-ms")
			b.ReportMetric(pct(baseline, 0.99), "baseline-p99-ms")
			b.ReportMetric(float64(len(baseline))/deleteTook.Seconds(), "baseline-req/s")
		}
	}
}
