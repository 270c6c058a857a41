package ingest_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/ingest/ratelimit"
)

// rlPost sends body to the server's path with extra headers and returns the
// status, the Retry-After header and the body.
func rlPost(tb testing.TB, s *testServer, path, body string, hdr ...string) (int, string, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
}

func mustRates(tb testing.TB, s string) []ratelimit.Rate {
	tb.Helper()
	r, err := ratelimit.Parse(s)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// wantStatus posts and checks the status.
func wantStatus(tb testing.TB, s *testServer, path, body string, want int, hdr ...string) {
	tb.Helper()
	if got, _, b := rlPost(tb, s, path, body, hdr...); got != want {
		tb.Fatalf("POST %s %v: status %d (%s), want %d", path, hdr, got, b, want)
	}
}

func TestServer_RateLimit(t *testing.T) {
	s := startServer(t, ingest.Config{Rates: mustRates(t, "60/minute")})
	valid := event("startup", `{"level":3}`, testKey)
	start := time.Now()
	wantStatus(t, s, "/v1.0/event", valid, http.StatusNoContent)
	// Requests count before their body is read: 401s and 422s spend the
	// budget as well, without a commit each.
	passed := 1
	var status int
	var retry, body string
	for passed < 200 {
		b := `{}`
		if passed%2 == 0 {
			b = event("x", "", "wrong-key")
		}
		status, retry, body = rlPost(t, s, "/v1.0/event", b)
		if status == http.StatusTooManyRequests {
			break
		}
		if status != http.StatusUnprocessableEntity && status != http.StatusUnauthorized {
			t.Fatalf("request %d: status %d (%s)", passed+1, status, body)
		}
		passed++
	}
	// The bucket refills one token a second: requests that took longer than
	// a second may have earned more.
	if most := 60 + int(time.Since(start)/time.Second); passed < 60 || passed > most {
		t.Errorf("%d requests passed before the first 429, want 60 (at most %d)", passed, most)
	}
	if want := `{"detail":"Rate limit exceeded: 60 per 1 minute"}`; status != http.StatusTooManyRequests || body != want {
		t.Errorf("got %d %s, want 429 %s", status, body, want)
	}
	if retry != "1" {
		t.Errorf("Retry-After %q, want 1", retry)
	}
	status, _, _ = rlPost(t, s, "/v1.0/event", valid)
	if status != http.StatusTooManyRequests {
		t.Errorf("a valid event after the limit: status %d, want 429", status)
	}
	if rows := s.rows(t); len(rows) != 1 {
		t.Errorf("%d rows, want the 1 event sent before the limit", len(rows))
	}
}

func TestServer_RateLimitSharedAndPerRequest(t *testing.T) {
	s := startServer(t, ingest.Config{Rates: mustRates(t, "3 per 1 hour")})
	batch := "[" + strings.Repeat(event("batch", "", testKey)+",", 4) + event("batch", "", testKey) + "]"
	wantStatus(t, s, "/v1.0/events", batch, http.StatusNoContent)
	wantStatus(t, s, "/v1.0/event", event("one", "", testKey), http.StatusNoContent)
	wantStatus(t, s, "/v1.0/events", batch, http.StatusNoContent)
	status, retry, body := rlPost(t, s, "/v1.0/event", event("one", "", testKey))
	if want := `{"detail":"Rate limit exceeded: 3 per 1 hour"}`; status != http.StatusTooManyRequests || body != want {
		t.Errorf("4th request: %d %s, want 429 %s", status, body, want)
	}
	if retry != "1200" {
		t.Errorf("Retry-After %q, want 1200 (an hour / 3)", retry)
	}
	wantStatus(t, s, "/v1.0/events", batch, http.StatusTooManyRequests)
	// Unknown paths spend nothing, and answer as before.
	wantStatus(t, s, "/v1.0/nothing", "{}", http.StatusNotFound)
	if rows := s.rows(t); len(rows) != 11 {
		t.Errorf("%d rows, want 11 (two batches of 5 and one event)", len(rows))
	}
}

func TestServer_RateLimitSeveral(t *testing.T) {
	for _, tc := range []struct{ rates, want, retry string }{
		{"3 per 1 hour; 5 per 1 day", "3 per 1 hour", "1200"},
		{"5 per 1 hour, 3 per 1 day", "3 per 1 day", "28800"},
	} {
		s := startServer(t, ingest.Config{Rates: mustRates(t, tc.rates)})
		for range 3 {
			wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity)
		}
		status, retry, body := rlPost(t, s, "/v1.0/event", "{}")
		if want := `{"detail":"Rate limit exceeded: ` + tc.want + `"}`; status != http.StatusTooManyRequests || body != want || retry != tc.retry {
			t.Errorf("%s: 4th request %d %s Retry-After %s, want 429 %s Retry-After %s", tc.rates, status, body, retry, want, tc.retry)
		}
	}
}

func TestServer_RateLimitOffAndReload(t *testing.T) {
	s := startServer(t, ingest.Config{Rates: mustRates(t, "1 per 1 hour")})
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity)
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusTooManyRequests)

	// The same rates again keep the buckets.
	s.Srv.Reconfigure(ingest.Config{Keys: []string{testKey}, Rates: mustRates(t, "1/hour")})
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusTooManyRequests)

	// off: no limit at all.
	s.Srv.Reconfigure(ingest.Config{Keys: []string{testKey}, Rates: mustRates(t, "off")})
	for range 100 {
		wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity)
	}
	wantStatus(t, s, "/v1.0/event", event("after", "", testKey), http.StatusNoContent)

	// New rates take effect with fresh buckets.
	s.Srv.Reconfigure(ingest.Config{Keys: []string{testKey}, Rates: mustRates(t, "2 per 1 day")})
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity)
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity)
	status, _, body := rlPost(t, s, "/v1.0/event", "{}")
	if want := `{"detail":"Rate limit exceeded: 2 per 1 day"}`; status != http.StatusTooManyRequests || body != want {
		t.Errorf("after reload: %d %s, want 429 %s", status, body, want)
	}
}

func TestServer_RateLimitUntrustedPeer(t *testing.T) {
	// The test client, 127.0.0.1, is not a trusted proxy here.
	trusted, err := ratelimit.ParseTrustedProxies("192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, ingest.Config{Rates: mustRates(t, "2 per 1 hour"), TrustedProxies: trusted})
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, "X-Forwarded-For", "203.0.113.1")
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, "X-Real-IP", "203.0.113.2")
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusTooManyRequests, "X-Forwarded-For", "203.0.113.3", "X-Real-IP", "203.0.113.4")
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusTooManyRequests)
}

func TestServer_RateLimitTrustedProxy(t *testing.T) {
	// Default TRUSTED_PROXIES: 127.0.0.1, so the test client is a proxy
	// whose X-Forwarded-For is believed.
	s := startServer(t, ingest.Config{Rates: mustRates(t, "2 per 1 hour"), ClientIPHeader: ratelimit.HeaderForwardedFor})
	xff := func(v string) []string { return []string{"X-Forwarded-For", v} }
	a := xff("203.0.113.1")
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, a...)
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, a...)
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusTooManyRequests, a...)
	// A forged left part, or a trusted hop after the client, is the same
	// client.
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusTooManyRequests, xff("198.51.100.77, 203.0.113.1")...)
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusTooManyRequests, xff("203.0.113.1, 127.0.0.1")...)
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusTooManyRequests, "X-Forwarded-For", "198.51.100.77", "X-Forwarded-For", "203.0.113.1")
	// Another client behind the proxy has its own budget; so has the proxy
	// (X-Real-IP is not the header named, so it is not read).
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, xff("203.0.113.1, 203.0.113.2")...)
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, "X-Real-IP", "203.0.113.3")
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity)

	// IPv6 clients share a budget per /64.
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, xff("2001:db8:1:2::1")...)
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, xff("2001:db8:1:2::2")...)
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusTooManyRequests, xff("2001:db8:1:2:abcd::99")...)
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, xff("2001:db8:1:3::1")...)
}

// TestServer_ClientIPHeader is the third rate-limit attack: a
// client picking its own budget with a header of its making. Only the header
// CLIENT_IP_HEADER names is read, and only from a trusted proxy.
func TestServer_ClientIPHeader(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header ratelimit.ClientIPHeader
		// sent are the headers of three requests; want their statuses
		// under a limit of 2 per hour.
		sent [][]string
		want []int
	}{
		{"none (default): a loopback forwarder that adds nothing", ratelimit.HeaderNone,
			[][]string{{"X-Forwarded-For", "198.51.100.1"}, {"X-Forwarded-For", "198.51.100.2", "X-Real-IP", "198.51.100.3"}, {"X-Forwarded-For", "198.51.100.4"}},
			[]int{422, 422, 429}},
		{"X-Real-IP: a proxy that sets only X-Real-IP, a client that adds X-Forwarded-For", ratelimit.HeaderRealIP,
			[][]string{{"X-Real-IP", "203.0.113.9", "X-Forwarded-For", "198.51.100.1"}, {"X-Real-IP", "203.0.113.9", "X-Forwarded-For", "198.51.100.2"}, {"X-Real-IP", "203.0.113.9", "X-Forwarded-For", "198.51.100.3"}},
			[]int{422, 422, 429}},
		{"X-Real-IP: distinct clients behind the proxy", ratelimit.HeaderRealIP,
			[][]string{{"X-Real-IP", "203.0.113.1"}, {"X-Real-IP", "203.0.113.2"}, {"X-Real-IP", "203.0.113.3"}},
			[]int{422, 422, 422}},
		{"X-Forwarded-For: the rightmost untrusted hop", ratelimit.HeaderForwardedFor,
			[][]string{{"X-Forwarded-For", "198.51.100.1, 203.0.113.9"}, {"X-Forwarded-For", "198.51.100.2, 203.0.113.9"}, {"X-Forwarded-For", "198.51.100.3, 203.0.113.9", "X-Real-IP", "198.51.100.4"}},
			[]int{422, 422, 429}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, ingest.Config{Rates: mustRates(t, "2 per 1 hour"), ClientIPHeader: tc.header})
			for i, h := range tc.sent {
				wantStatus(t, s, "/v1.0/event", "{}", tc.want[i], h...)
			}
		})
	}
	// From a peer not in TRUSTED_PROXIES the named header is not read.
	none, _ := ratelimit.ParseTrustedProxies("")
	s := startServer(t, ingest.Config{Rates: mustRates(t, "2 per 1 hour"), ClientIPHeader: ratelimit.HeaderRealIP, TrustedProxies: none})
	for i, want := range []int{422, 422, 429} {
		wantStatus(t, s, "/v1.0/event", "{}", want, "X-Real-IP", fmt.Sprintf("203.0.113.%d", i))
	}
}

// TestServer_RateLimitStarvation is the overflow attack through the
// server: with RATE_LIMIT_CLIENTS=3 and 5/minute, three forwarded addresses
// fill the table and five requests from a fourth spend its budget; a
// brand-new client from another network still gets its first request in.
func TestServer_RateLimitStarvation(t *testing.T) {
	s := startServer(t, ingest.Config{Rates: mustRates(t, "5/minute"), RateLimitClients: 3, ClientIPHeader: ratelimit.HeaderRealIP})
	for i := range 3 {
		wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, "X-Real-IP", fmt.Sprintf("198.51.100.%d", i+1))
	}
	for range 5 {
		wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, "X-Real-IP", "198.51.100.4")
	}
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusTooManyRequests, "X-Real-IP", "198.51.100.5")
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, "X-Real-IP", "192.0.2.77")
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, "X-Real-IP", "2001:db8:77::1")
}
