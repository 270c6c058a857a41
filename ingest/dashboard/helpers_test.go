package dashboard_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/ingest/dashboard"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
)

const (
	adminKey  = "admin-key-for-tests"
	ingestKey = "ingest-key-for-tests"
)

// keyGuard lets through requests bearing adminKey, as ingest/admin's Guard
// does.
type keyGuard struct{ keys *ingest.Keys }

func (g keyGuard) Allow(ctx *fasthttp.RequestCtx) bool {
	h := ctx.Request.Header.Peek("Authorization")
	var k []byte
	if bytes.HasPrefix(h, []byte("Bearer ")) {
		k = h[len("Bearer "):]
	}
	if g.keys.Valid(k) {
		return true
	}
	ctx.SetStatusCode(fasthttp.StatusUnauthorized)
	ctx.SetBodyString(`{"detail":"Invalid or missing admin key"}`)
	return false
}

// november10 is the tests' clock: noon on the last day of the dataset.
var november10 = time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)

// startDashboard serves the stats API and the page over the database at
// path, on 127.0.0.1:0, and returns its base URL.
func startDashboard(tb testing.TB, path string) string {
	tb.Helper()
	return serveDashboard(tb, dashboard.Config{
		Source: querytest.OpenReader(tb, path),
		Guard:  keyGuard{ingest.NewKeys([]string{adminKey})},
		Now:    func() time.Time { return november10 },
	})
}

// serveDashboard serves the handlers of cfg on 127.0.0.1:0 and returns the
// base URL.
func serveDashboard(tb testing.TB, cfg dashboard.Config) string {
	tb.Helper()
	h := dashboard.New(cfg)
	r := router.New()
	h.Register(r)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: r.Handler, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Shutdown() })
	return "http://" + ln.Addr().String()
}

// get fetches url with the key (none if empty) and returns the status,
// headers and body.
func get(tb testing.TB, url, key string) (int, http.Header, string) {
	tb.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}
