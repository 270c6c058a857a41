package ingest_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/ingest/ratelimit"
	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

// health returns the status and decoded body of GET /healthz.
func health(t *testing.T, base string) (int, map[string]string) {
	t.Helper()
	resp, body := call(t, "GET", base+"/healthz", nil, nil)
	var got map[string]string
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("/healthz body %q is not a JSON object of strings: %v", body, err)
	}
	return resp.StatusCode, got
}

// scrape returns the samples of GET /metrics by series name (with labels).
func scrape(t *testing.T, base string) (map[string]float64, string) {
	t.Helper()
	resp, body := call(t, "GET", base+"/metrics", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("/metrics Content-Type %q, want Prometheus text", ct)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("/metrics line %q is not a sample", line)
		}
		out[line[:i]] = v
	}
	return out, body
}

func TestHealthz(t *testing.T) {
	s, _ := startWired(t, ingest.Config{}, shard.Options{BusyTimeout: 50 * time.Millisecond})
	if status, body := health(t, s.URL); status != 200 || body["status"] != "ok" {
		t.Fatalf("healthy: %d %v, want 200 ok", status, body)
	}

	// Another process holds the write lock past the busy timeout: the
	// commit fails, and /healthz says so until a commit succeeds.
	lock := shardtest.HoldLock(t, s.DBPath)
	if status, body := s.post(t, "/v1.0/event", event("locked", "", testKey)); status != 503 {
		t.Fatalf("post while locked: %d %s, want 503", status, body)
	}
	status, body := health(t, s.URL)
	if status != 503 || body["status"] != "unavailable" || !strings.Contains(body["detail"], "last commit failed") || !strings.Contains(body["detail"], "locked") {
		t.Errorf("after a failed commit: %d %v, want 503 naming the failed commit", status, body)
	}
	lock.Release(t)
	if status, body := s.post(t, "/v1.0/event", event("unlocked", "", testKey)); status != 204 {
		t.Fatalf("post after unlock: %d %s", status, body)
	}
	if status, body := health(t, s.URL); status != 200 {
		t.Errorf("after a good commit: %d %v, want 200", status, body)
	}

	if err := s.DB.Close(); err != nil {
		t.Fatal(err)
	}
	status, body = health(t, s.URL)
	if status != 503 || !strings.Contains(body["detail"], "closed") {
		t.Errorf("database closed: %d %v, want 503 naming it", status, body)
	}
	resp, _ := call(t, "HEAD", s.URL+"/healthz", nil, nil)
	if resp.StatusCode != 503 {
		t.Errorf("HEAD /healthz: %d, want 503", resp.StatusCode)
	}
}

func TestMetrics(t *testing.T) {
	s, _ := startWired(t, ingest.Config{}, shard.Options{})
	posts := []struct {
		path, body string
		want       int
	}{
		{"/v1.0/event", event("a", "", testKey), 204},
		{"/v1.0/events", "[" + event("b", "", testKey) + "," + event("c", "", testKey) + "]", 204},
		{"/v1.0/events", "[]", 204},
		{"/v1.0/event", event("d", "", "nope"), 401},
		{"/v1.0/event", "{", 422},
	}
	for _, p := range posts {
		if status, body := s.post(t, p.path, p.body); status != p.want {
			t.Fatalf("POST %s %s: %d %s, want %d", p.path, p.body, status, body, p.want)
		}
	}
	call(t, "POST", s.URL+"/v1.0/event", map[string]string{"Content-Encoding": "gzip"}, []byte("x"))
	call(t, "GET", s.URL+"/nowhere", nil, nil)

	got, text := scrape(t, s.URL)
	want := map[string]float64{
		"gocolytics_events_stored_total":                            3,
		`gocolytics_commits_total{result="ok"}`:                     2,
		`gocolytics_commits_total{result="error"}`:                  0,
		`gocolytics_requests_total{path="/v1.0/event",code="204"}`:  1,
		`gocolytics_requests_total{path="/v1.0/events",code="204"}`: 2,
		`gocolytics_requests_total{path="/v1.0/event",code="401"}`:  1,
		`gocolytics_requests_total{path="/v1.0/event",code="422"}`:  1,
		`gocolytics_requests_total{path="/v1.0/event",code="400"}`:  1,
		`gocolytics_requests_total{path="other",code="404"}`:        1,
		`gocolytics_rejections_total{reason="unauthorized"}`:        1,
		`gocolytics_rejections_total{reason="invalid"}`:             1,
		`gocolytics_rejections_total{reason="bad_request"}`:         1,
		"gocolytics_request_events_count":                           3,
		"gocolytics_request_events_sum":                             3,
		`gocolytics_request_events_bucket{le="1"}`:                  2,
		`gocolytics_request_events_bucket{le="2"}`:                  3,
		"gocolytics_commit_events_count":                            2,
		"gocolytics_commit_events_sum":                              3,
		"gocolytics_commit_seconds_count":                           2,
		`gocolytics_commit_seconds_bucket{le="+Inf"}`:               2,
		"gocolytics_queued_events":                                  0,
		"gocolytics_healthy":                                        1,
		"gocolytics_rate_limited_clients":                           0,
		// Absent: nothing was rate limited or too large, and a scrape
		// is counted once it has been answered.
		`gocolytics_rejections_total{reason="rate_limited"}`:    -1,
		`gocolytics_rejections_total{reason="body_too_large"}`:  -1,
		`gocolytics_requests_total{path="/metrics",code="200"}`: -1,
	}
	for series, v := range want {
		g, ok := got[series]
		switch {
		case v < 0 && ok:
			t.Errorf("%s = %v, want absent", series, g)
		case v >= 0 && !ok:
			t.Errorf("%s missing", series)
		case v >= 0 && g != v:
			t.Errorf("%s = %v, want %v", series, g, v)
		}
	}
	for _, typ := range []string{
		"# TYPE gocolytics_events_stored_total counter",
		"# TYPE gocolytics_commit_seconds histogram",
		"# TYPE gocolytics_queued_events gauge",
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(text, typ) {
			t.Errorf("/metrics lacks %q", typ)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", text)
	}
}

func TestOps_Placement(t *testing.T) {
	t.Run("separate", func(t *testing.T) {
		s, ops := startWired(t, ingest.Config{Ops: ingest.OpsSeparate}, shard.Options{})
		for _, p := range []string{"/healthz", "/metrics"} {
			if resp, _ := call(t, "GET", s.URL+p, nil, nil); resp.StatusCode != 404 {
				t.Errorf("ingest listener %s: %d, want 404", p, resp.StatusCode)
			}
			if resp, _ := call(t, "GET", ops+p, nil, nil); resp.StatusCode != 200 {
				t.Errorf("ops listener %s: %d, want 200", p, resp.StatusCode)
			}
		}
		for _, p := range []string{"/v1.0/event", "/docs"} {
			if resp, _ := call(t, "POST", ops+p, nil, []byte(event("e", "", testKey))); resp.StatusCode != 404 {
				t.Errorf("ops listener %s: %d, want 404", p, resp.StatusCode)
			}
		}
		if status, body := s.post(t, "/v1.0/event", event("e", "", testKey)); status != 204 {
			t.Fatalf("post: %d %s", status, body)
		}
		if got, _ := scrape(t, ops); got["gocolytics_events_stored_total"] != 1 {
			t.Errorf("events stored %v, want 1", got["gocolytics_events_stored_total"])
		}
	})
	t.Run("off", func(t *testing.T) {
		s, _ := startWired(t, ingest.Config{Ops: ingest.OpsOff}, shard.Options{})
		for _, p := range []string{"/healthz", "/metrics"} {
			if resp, _ := call(t, "GET", s.URL+p, nil, nil); resp.StatusCode != 404 {
				t.Errorf("%s: %d, want 404", p, resp.StatusCode)
			}
		}
	})
}

// TestOps_NotRateLimited checks a client over its rate limit still reads
// /healthz and /metrics, and that the 429s are counted.
func TestOps_NotRateLimited(t *testing.T) {
	s, _ := startWired(t, ingest.Config{Rates: []ratelimit.Rate{{Count: 1, Multiplier: 1, Unit: "hour"}}}, shard.Options{})
	statuses := []int{}
	for range 3 {
		status, _ := s.post(t, "/v1.0/event", event("e", "", testKey))
		statuses = append(statuses, status)
	}
	if fmt.Sprint(statuses) != "[204 429 429]" {
		t.Fatalf("statuses %v, want [204 429 429]", statuses)
	}
	for range 5 {
		if status, _ := health(t, s.URL); status != 200 {
			t.Fatalf("/healthz: %d, want 200", status)
		}
	}
	got, _ := scrape(t, s.URL)
	if v := got[`gocolytics_rejections_total{reason="rate_limited"}`]; v != 2 {
		t.Errorf("rate_limited rejections %v, want 2", v)
	}
	if v := got["gocolytics_rate_limited_clients"]; v != 1 {
		t.Errorf("clients currently limited %v, want 1", v)
	}
}
