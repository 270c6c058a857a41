package dashboard_test

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/ingest/dashboard"
	"github.com/gocolytics/gocolytics/ingest/internal/chromium"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
)

// benchGame is shard/query's benchmark database (querytest.BenchGame).
var benchGame = querytest.BenchGame

// BenchmarkDashboard_FirstRender loads the dashboard in headless Chromium
// for the last 30 days of the benchmark database, from its raw rows and
// from its summary tables, and reports the first render: from the server
// receiving GET /dashboard to the end of the last answer the page asked
// for while loading (the statistics, the applications, the recent events),
// and how many loads ended without the figures (data-loaded): a stats
// request past its 10 s limit. Chromium's own start is not counted.
//
// Run with: flock /tmp/gocolytics-bench.lock go test -run '^$' -bench FirstRender -benchtime 3x ./ingest/dashboard/
func BenchmarkDashboard_FirstRender(b *testing.B) {
	browser := chromium.Path(b, "the first-render benchmark")
	for _, c := range []struct {
		name string
		path func(testing.TB, querytest.Realistic) string
	}{{"raw", querytest.CachedRealistic}, {"summaries", querytest.CachedSummarised}} {
		b.Run(c.name, func(b *testing.B) {
			rec := &requestLog{}
			base := serveRecorded(b, c.path(b, benchGame), rec)
			page := base + "/dashboard?application=Bench%20Game&since=2026-10-31&until=2026-11-29&live=0#key=" + adminKey
			var total time.Duration
			failed := 0
			for b.Loop() {
				rec.reset()
				dom, _ := chromium.Run(b, browser, page, 60*time.Second, "--dump-dom")
				if !strings.Contains(dom, `data-loaded="true"`) {
					// The raw statistics may run past the 10 s limit
					// of a stats request: the page then shows the
					// error instead.
					failed++
				}
				total += rec.render(b)
			}
			b.Logf("the last load: %s", rec.timeline())
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "render-ms/op")
			b.ReportMetric(float64(failed)/float64(b.N), "not-loaded/op")
		})
	}
}

// requestLog records when each request began and ended.
type requestLog struct {
	mu    sync.Mutex
	page  time.Time
	last  time.Time
	paths []string
	spans []string // each request's path, start and end after page
}

func (l *requestLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.page, l.last, l.paths, l.spans = time.Time{}, time.Time{}, nil, nil
}

func (l *requestLog) add(path string, start, end time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if path == "/dashboard" && l.page.IsZero() {
		l.page = start
	}
	if end.After(l.last) {
		l.last = end
	}
	l.paths = append(l.paths, path)
	if !l.page.IsZero() {
		l.spans = append(l.spans, fmt.Sprintf("%s %d-%d ms", path, start.Sub(l.page).Milliseconds(), end.Sub(l.page).Milliseconds()))
	}
}

// timeline lists the requests of the last load, with their start and end
// after GET /dashboard's start.
func (l *requestLog) timeline() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.spans, ", ")
}

// render is the time from GET /dashboard to the end of the last answer.
func (l *requestLog) render(tb testing.TB) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.page.IsZero() {
		tb.Fatalf("no GET /dashboard among %v", l.paths)
	}
	return l.last.Sub(l.page)
}

// serveRecorded serves the dashboard over the database at path, recording
// each request's start and end in rec.
func serveRecorded(tb testing.TB, path string, rec *requestLog) string {
	tb.Helper()
	h := dashboard.New(dashboard.Config{
		Source: querytest.OpenReader(tb, path),
		Guard:  keyGuard{ingest.NewKeys([]string{adminKey})},
		Now:    func() time.Time { return benchGame.Last.Add(12 * time.Hour) },
	})
	r := router.New()
	h.Register(r)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		start := time.Now()
		r.Handler(ctx)
		rec.add(string(ctx.Path()), start, time.Now())
	}, ReadTimeout: 60 * time.Second, WriteTimeout: 60 * time.Second}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Shutdown() })
	return "http://" + ln.Addr().String()
}
