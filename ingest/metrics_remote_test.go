package ingest_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/shard"
)

// TestMetrics_Remote: a worker's remote Metrics sends what it observes of
// its requests to the supervisor's Metrics, and its /metrics shows the
// supervisor's text, commits included.
func TestMetrics_Remote(t *testing.T) {
	sup := ingest.NewMetrics()
	var calls atomic.Int64
	worker := ingest.NewRemoteMetrics(func(q []byte) ([]byte, error) {
		calls.Add(1)
		return sup.Answer(q), nil
	})
	defer worker.Close()
	s, _ := startWired(t, ingest.Config{Metrics: worker, Rates: mustRates(t, "1/hour")}, shard.Options{})
	sup.ObserveCommit(7, time.Millisecond, nil) // the supervisor's writer
	for _, p := range []struct {
		path, body string
		want       int
	}{
		{"/v1.0/events", "[" + event("a", "", testKey) + "," + event("b", "", testKey) + "]", 204},
		{"/v1.0/event", event("c", "", testKey), 429},
	} {
		if status, body := s.post(t, p.path, p.body); status != p.want {
			t.Fatalf("POST %s: %d %s, want %d", p.path, status, body, p.want)
		}
	}
	got, text := scrape(t, s.URL)
	for series, v := range map[string]float64{
		"gocolytics_events_stored_total":                            7,
		`gocolytics_requests_total{path="/v1.0/events",code="204"}`: 1,
		`gocolytics_requests_total{path="/v1.0/event",code="429"}`:  1,
		`gocolytics_rejections_total{reason="rate_limited"}`:        1,
		"gocolytics_request_events_sum":                             2,
		"gocolytics_rate_limited_clients":                           1,
	} {
		if got[series] != v {
			t.Errorf("%s = %v, want %v", series, got[series], v)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", text)
	}
	if calls.Load() == 0 {
		t.Error("the worker never called the supervisor")
	}
}

// FuzzMetrics_Answer: the supervisor's end of the metrics calls never
// panics on a malformed batch of records.
func FuzzMetrics_Answer(f *testing.F) {
	f.Add([]byte{ingest.MetricsRecords, 'q', 0, 0xcc, 0x01, 0})
	f.Add([]byte{ingest.MetricsRecords, 'e', 3, 'l', 2, 'a', 'b', 0xe8, 0x07})
	f.Add([]byte{ingest.MetricsRecords, 'q', 200, 1})
	f.Add([]byte{ingest.MetricsText})
	m := ingest.NewMetrics()
	f.Fuzz(func(t *testing.T, q []byte) {
		m.Answer(q)
	})
}
