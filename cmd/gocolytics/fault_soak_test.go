package main

import (
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
)

// TestFault_Soak runs the server under steady load for GOCOLYTICS_SOAK (a
// duration such as 1h; not in CI) at GOCOLYTICS_SOAK_RATE events a second
// (default 1000), with a reader that holds a read transaction for a second
// every few seconds, as a notebook would. It samples the server's memory,
// descriptors and WAL size, and asserts that memory stays flat, the WAL
// stays bounded, and every acknowledged event is stored.
//
//	GOCOLYTICS_SOAK=1h go test -run TestFault_Soak -timeout 2h -v ./cmd/gocolytics/
func TestFault_Soak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("GOCOLYTICS_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("set GOCOLYTICS_SOAK=1h (a duration) to run the soak test")
	}
	rate := 1000
	if v, err := strconv.Atoi(os.Getenv("GOCOLYTICS_SOAK_RATE")); err == nil && v > 0 {
		rate = v
	}
	p := gctest.Start(t, "")
	pid := p.PID()

	// Requests of soakSize(seq) events, paced by one ticker, sent by 8
	// clients; each client keeps a bitmap of the requests acknowledged.
	const clients = 8
	type tally struct {
		acked      []bool
		sent, fail int
	}
	tallies := make([]tally, clients)
	work := make(chan struct{}, clients)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tl := &tallies[c]
			client := &http.Client{Timeout: 30 * time.Second}
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				case <-work:
				}
				n := soakSize(seq)
				markers := make([]string, n)
				for k := range markers {
					markers[k] = fmt.Sprintf("s-%d-%d-%d", c, seq, k)
				}
				tl.sent += n
				resp, err := client.Post(p.URL("/v1.0/events"), "", strings.NewReader(gctest.MarkedBatch(markers...)))
				ok := err == nil && resp.StatusCode == 204
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				tl.acked = append(tl.acked, ok)
				if !ok {
					tl.fail += n
				}
			}
		}()
	}
	// Average request size is 5.5 events.
	tick := time.NewTicker(time.Duration(float64(time.Second) * 5.5 / float64(rate)))
	defer tick.Stop()

	// A reader holding a snapshot for a second every five.
	readerStop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		db, err := sql.Open("sqlite3", "file:"+p.DBPath+"?mode=ro&_busy_timeout=5000")
		if err != nil {
			return
		}
		defer db.Close()
		for {
			select {
			case <-readerStop:
				return
			case <-time.After(4 * time.Second):
			}
			tx, err := db.Begin()
			if err != nil {
				continue
			}
			var n int
			tx.QueryRow("SELECT count(*) FROM event").Scan(&n)
			time.Sleep(time.Second)
			tx.Rollback()
		}
	}()

	type sample struct {
		at            time.Duration
		rss, hwm, wal int64
		fds           int
	}
	var samples []sample
	every := max(d/30, 5*time.Second)
	start := time.Now()
	next := start.Add(every)
	for time.Since(start) < d {
		<-tick.C
		select {
		case work <- struct{}{}:
		default: // the clients are behind: the load stays steady, not queued
		}
		if time.Now().After(next) {
			next = next.Add(every)
			wal := int64(0)
			if fi, err := os.Stat(p.DBPath + "-wal"); err == nil {
				wal = fi.Size()
			}
			samples = append(samples, sample{time.Since(start).Round(time.Second), procStatusKiB(pid, "VmRSS"), procStatusKiB(pid, "VmHWM"), wal, openFDs(pid)})
		}
	}
	close(stop)
	wg.Wait()
	close(readerStop)
	<-readerDone
	p.Stop(t)

	// Every acknowledged request's events are stored.
	found := make([]map[int]int, clients)
	for c := range found {
		found[c] = map[int]int{}
	}
	stored := 0
	gctest.EachMarker(t, p.DBPath, func(m string) {
		var c, seq, k int
		if _, err := fmt.Sscanf(m, "s-%d-%d-%d", &c, &seq, &k); err == nil && c < clients {
			found[c][seq]++
			stored++
		}
	})
	sent, acked, lost, failed := 0, 0, 0, 0
	for c, tl := range tallies {
		sent += tl.sent
		failed += tl.fail
		for seq, ok := range tl.acked {
			if ok {
				acked += soakSize(seq)
				if found[c][seq] != soakSize(seq) {
					lost += soakSize(seq) - found[c][seq]
				}
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%8s %10s %10s %10s %4s\n", "time", "RSS KiB", "HWM KiB", "WAL KiB", "fds")
	for _, s := range samples {
		fmt.Fprintf(&b, "%8s %10d %10d %10d %4d\n", s.at, s.rss, s.hwm, s.wal>>10, s.fds)
	}
	t.Logf("soak %s at %d events/s: %d events sent, %d acknowledged, %d not (error or non-204), %d stored, %d lost\n%s",
		d, rate, sent, acked, failed, stored, lost, b.String())
	if lost > 0 {
		t.Errorf("%d acknowledged events lost", lost)
	}
	if failed > 0 {
		t.Errorf("%d events were not acknowledged", failed)
	}
	if len(samples) >= 4 {
		// Flat: the last sample's RSS within 25% (and 32 MiB) of the one a
		// quarter of the way in, once caches are warm.
		ref, last := samples[len(samples)/4].rss, samples[len(samples)-1].rss
		if last > ref+ref/4+32<<10 {
			t.Errorf("RSS grew from %d KiB to %d KiB", ref, last)
		}
	}
	for _, s := range samples {
		// The writer truncates a WAL over 64 MiB every 256 commits.
		if s.wal > 96<<20 {
			t.Errorf("WAL %d KiB at %s, over 96 MiB", s.wal>>10, s.at)
		}
	}
}

// soakSize is how many events request seq carries: 1 to 10.
func soakSize(seq int) int { return 1 + seq%10 }
