package main

import (
	"strings"
	"testing"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
)

// TestWorkers_Metrics: with two workers, /metrics shows the process-wide
// counters whichever worker answers: after N accepted events every scrape
// shows N stored, commits and their latency, N requests answered 204, and
// no request counter ever goes down from one scrape to the next.
func TestWorkers_Metrics(t *testing.T) {
	t.Parallel()
	p := gctest.Start(t, "", "--workers", "2")
	const clients, requests = 6, 10
	const n = clients * requests
	l := gctest.Load{Addr: p.Addr, Clients: clients, Requests: requests, NewConns: true}.Start()
	l.Wait()
	if got := l.Count(204); got != n {
		t.Fatalf("got %d × 204 (statuses %v), want %d", got, l.Statuses(), n)
	}
	const accepted = `gocolytics_requests_total{path="/v1.0/event",code="204"}`
	// Each worker sends its request records within half a second.
	gctest.WaitFor(t, func() bool { return gctest.Metrics(t, p.Addr)[accepted] == n }, "the workers' request records")

	var prev map[string]float64
	for i := range 20 {
		got := gctest.Metrics(t, p.Addr)
		if v := got["gocolytics_events_stored_total"]; v != n {
			t.Errorf("scrape %d: gocolytics_events_stored_total = %v, want %d", i, v, n)
		}
		if v := got[`gocolytics_commits_total{result="ok"}`]; v < 1 || v > n {
			t.Errorf("scrape %d: %v commits, want 1 to %d", i, v, n)
		}
		if v := got["gocolytics_commit_seconds_count"]; v < 1 {
			t.Errorf("scrape %d: gocolytics_commit_seconds_count = %v, want at least 1", i, v)
		}
		if v := got["gocolytics_request_events_sum"]; v != n {
			t.Errorf("scrape %d: gocolytics_request_events_sum = %v, want %d", i, v, n)
		}
		if v := got[accepted]; v != n {
			t.Errorf("scrape %d: %s = %v, want %d", i, accepted, v, n)
		}
		for name, v := range prev {
			if strings.HasPrefix(name, "gocolytics_requests_total") && got[name] < v {
				t.Errorf("scrape %d: %s went down from %v to %v", i, name, v, got[name])
			}
		}
		prev = got
	}
	// The scrapes themselves are counted too: all but the last few.
	gctest.WaitFor(t, func() bool {
		return gctest.Metrics(t, p.Addr)[`gocolytics_requests_total{path="/metrics",code="200"}`] >= 20
	}, "the scrapes counted")
	p.Stop(t)
}
