package ingest_test

import (
	"io"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/ingest"
)

func TestParseRateLimit(t *testing.T) {
	r := func(count, mult int, unit string) ingest.Rate {
		return ingest.Rate{Count: count, Multiplier: mult, Unit: unit}
	}
	for _, tc := range []struct {
		in   string
		want []ingest.Rate
	}{
		{"60/minute", []ingest.Rate{r(60, 1, "minute")}},
		{"60 per minute", []ingest.Rate{r(60, 1, "minute")}},
		{"60 PER Minute", []ingest.Rate{r(60, 1, "minute")}},
		{"10/second", []ingest.Rate{r(10, 1, "second")}},
		{"1000/day", []ingest.Rate{r(1000, 1, "day")}},
		{"5 per 2 hours", []ingest.Rate{r(5, 2, "hour")}},
		{"5/2hours", []ingest.Rate{r(5, 2, "hour")}},
		{"3 per 1 months", []ingest.Rate{r(3, 1, "month")}},
		{"1/year", []ingest.Rate{r(1, 1, "year")}},
		{"  60/minute  ", []ingest.Rate{r(60, 1, "minute")}},
		{"10/second;100/minute", []ingest.Rate{r(10, 1, "second"), r(100, 1, "minute")}},
		{"10/second, 100 per minute", []ingest.Rate{r(10, 1, "second"), r(100, 1, "minute")}},
		{"10/second|100/minute;", []ingest.Rate{r(10, 1, "second"), r(100, 1, "minute")}},
		{"", nil},
		{"   ", nil},
		{"off", nil},
		{"OFF", nil},
	} {
		got, err := ingest.ParseRateLimit(tc.in)
		if err != nil {
			t.Errorf("ParseRateLimit(%q): %v", tc.in, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("ParseRateLimit(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	for _, in := range []string{
		"60", "minute", "60/", "/minute", "60/fortnight", "0/minute", "60/0 minutes",
		"-1/minute", "1.5/minute", "60 per", "60 minute", "60/minute/hour",
		"99999999999999999999/minute", "60/minute;bogus", ";", "on", "60/minutes please",
	} {
		if got, err := ingest.ParseRateLimit(in); err == nil {
			t.Errorf("ParseRateLimit(%q) = %v, want an error", in, got)
		}
	}
}

func TestRate_String(t *testing.T) {
	rates, err := ingest.ParseRateLimit("60/minute;5 per 2 hours")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rates {
		got = append(got, r.String())
	}
	if want := []string{"60 per 1 minute", "5 per 2 hour"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseTrustedProxies(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{ingest.DefaultTrustedProxies, "127.0.0.0/8 ::1/128"},
		{"10.0.0.1", "10.0.0.1/32"},
		{"10.1.2.3/8, 192.0.2.0/24\t2001:db8::/32", "10.0.0.0/8 192.0.2.0/24 2001:db8::/32"},
		{"::ffff:10.0.0.1", "10.0.0.1/32"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"", ""},
	} {
		got, err := ingest.ParseTrustedProxies(tc.in)
		if err != nil {
			t.Errorf("ParseTrustedProxies(%q): %v", tc.in, err)
			continue
		}
		if got == nil {
			t.Errorf("ParseTrustedProxies(%q) = nil, want a non-nil list", tc.in)
		}
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if strings.Join(s, " ") != tc.want {
			t.Errorf("ParseTrustedProxies(%q) = %q, want %q", tc.in, s, tc.want)
		}
	}
	for _, in := range []string{"localhost", "10.0.0.0/33", "10.0.0.256", "*", "10.0.0.1:80"} {
		if _, err := ingest.ParseTrustedProxies(in); err == nil {
			t.Errorf("ParseTrustedProxies(%q): want an error", in)
		}
	}
}

func TestClientKey(t *testing.T) {
	key := func(s string) string { return ingest.ClientKey(netip.MustParseAddr(s)) }
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
	} {
		if got := key(tc.in); got != tc.want {
			t.Errorf("ClientKey(%s) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if a, b := key("2001:db8:1:2::1"), key("2001:db8:1:2:8000::1"); a != b {
		t.Errorf("one /64, two budgets: %q, %q", a, b)
	}
	if a, b := key("2001:db8:1:2::1"), key("2001:db8:1:3::1"); a == b {
		t.Errorf("two /64s, one budget: %q", a)
	}
	if a, b := key("192.0.2.7"), key("192.0.2.8"); a == b {
		t.Errorf("two IPv4 addresses, one budget: %q", a)
	}
}

func TestClientAddr(t *testing.T) {
	trusted, err := ingest.ParseTrustedProxies("127.0.0.0/8 ::1 10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, peer string
		xff        []string
		realIP     string
		want       string
	}{
		{"untrusted peer, no headers", "192.0.2.7", nil, "", "192.0.2.7"},
		{"untrusted peer, spoofed headers", "192.0.2.7", []string{"198.51.100.1"}, "198.51.100.2", "192.0.2.7"},
		{"trusted peer, no headers", "127.0.0.1", nil, "", "127.0.0.1"},
		{"trusted peer, one hop", "127.0.0.1", []string{"198.51.100.1"}, "", "198.51.100.1"},
		{"rightmost untrusted hop", "127.0.0.1", []string{"203.0.113.9, 198.51.100.1, 10.0.0.5"}, "", "198.51.100.1"},
		{"several header lines", "127.0.0.1", []string{"203.0.113.9", "198.51.100.1, 10.0.0.5", "10.0.0.6"}, "", "198.51.100.1"},
		{"every hop trusted: the leftmost", "127.0.0.1", []string{"10.0.0.1, 10.0.0.2"}, "", "10.0.0.1"},
		{"garbage left of a trusted hop", "127.0.0.1", []string{"unknown, 10.0.0.2"}, "", "10.0.0.2"},
		{"garbage as the only hop", "127.0.0.1", []string{"unknown"}, "198.51.100.3", "127.0.0.1"},
		{"garbage left of the client is never reached", "127.0.0.1", []string{"unknown, 198.51.100.1"}, "", "198.51.100.1"},
		{"ports and brackets", "::1", []string{"[2001:db8::7]:4711, 198.51.100.1:80"}, "", "198.51.100.1"},
		{"IPv6 hop", "::1", []string{"2001:db8::7"}, "", "2001:db8::7"},
		{"empty entries", "127.0.0.1", []string{" , 198.51.100.1 ,, "}, "", "198.51.100.1"},
		{"X-Real-IP without X-Forwarded-For", "127.0.0.1", nil, "198.51.100.4", "198.51.100.4"},
		{"X-Forwarded-For before X-Real-IP", "127.0.0.1", []string{"198.51.100.1"}, "198.51.100.4", "198.51.100.1"},
		{"bad X-Real-IP", "127.0.0.1", nil, "nobody", "127.0.0.1"},
		{"mapped peer", "::ffff:127.0.0.1", []string{"198.51.100.1"}, "", "198.51.100.1"},
	} {
		var xff [][]byte
		for _, l := range tc.xff {
			xff = append(xff, []byte(l))
		}
		got := ingest.ClientAddr(netip.MustParseAddr(tc.peer), xff, []byte(tc.realIP), trusted)
		if got.String() != tc.want {
			t.Errorf("%s: ClientAddr = %s, want %s", tc.name, got, tc.want)
		}
	}
}

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

func mustRates(tb testing.TB, s string) []ingest.Rate {
	tb.Helper()
	r, err := ingest.ParseRateLimit(s)
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
	trusted, err := ingest.ParseTrustedProxies("192.0.2.1")
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
	// Default TRUSTED_PROXIES: loopback, so the test client is a proxy.
	s := startServer(t, ingest.Config{Rates: mustRates(t, "2 per 1 hour")})
	xff := func(v string) []string { return []string{"X-Forwarded-For", v} }
	a := xff("203.0.113.1")
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, a...)
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, a...)
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusTooManyRequests, a...)
	// A forged left part, or a trusted hop after the client, is the same
	// client.
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusTooManyRequests, xff("198.51.100.77, 203.0.113.1")...)
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusTooManyRequests, xff("203.0.113.1, 127.0.0.2")...)
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusTooManyRequests, "X-Forwarded-For", "198.51.100.77", "X-Forwarded-For", "203.0.113.1")
	// Another client behind the proxy has its own budget; so has the proxy.
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, xff("203.0.113.1, 203.0.113.2")...)
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, "X-Real-IP", "203.0.113.3")
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity)

	// IPv6 clients share a budget per /64.
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, xff("2001:db8:1:2::1")...)
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, xff("2001:db8:1:2::2")...)
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusTooManyRequests, xff("2001:db8:1:2:abcd::99")...)
	wantStatus(t, s, "/v1.0/event", "{}", http.StatusUnprocessableEntity, xff("2001:db8:1:3::1")...)
}

func TestTollboothBudget_Allow(t *testing.T) {
	b := ingest.NewTollboothBudget(mustRates(t, "2 per 1 hour; 3 per 1 day"), ingest.TollboothOptions{})
	for i := range 2 {
		if ok, _, _ := b.Allow("a"); !ok {
			t.Fatalf("request %d refused", i+1)
		}
	}
	ok, r, wait := b.Allow("a")
	if ok || r.String() != "2 per 1 hour" || wait != 30*time.Minute {
		t.Errorf("3rd request: %v %v %v, want false, 2 per 1 hour, 30m", ok, r, wait)
	}
	if ok, _, _ := b.Allow("b"); !ok {
		t.Errorf("another client refused")
	}
	if got := b.Len(); got != 2 {
		t.Errorf("Len = %d, want 2", got)
	}
}

func TestTollboothBudget_CapAndExpiry(t *testing.T) {
	const ttl = 200 * time.Millisecond
	b := ingest.NewTollboothBudget(mustRates(t, "1 per 1 hour"), ingest.TollboothOptions{MaxClients: 2, TTL: ttl})
	allow := func(c string) bool { ok, _, _ := b.Allow(c); return ok }
	if !allow("a") || !allow("b") {
		t.Fatal("first requests refused")
	}
	// Full: newcomers share one overflow budget; tracked clients keep theirs.
	if !allow("c") {
		t.Error("the first newcomer should spend the overflow budget")
	}
	if allow("d") {
		t.Error("a second newcomer should find the overflow budget spent")
	}
	if allow("a") {
		t.Error("a tracked client lost its budget")
	}
	if got := b.Len(); got != 2 {
		t.Errorf("Len = %d, want 2 (the cap)", got)
	}
	// After the TTL the sweep frees the table: d gets a budget of its own,
	// and a, back again, a fresh one.
	time.Sleep(ttl + ttl/2)
	if !allow("d") {
		t.Error("after the TTL: newcomer refused")
	}
	if !allow("a") {
		t.Error("after the TTL: a's buckets did not expire")
	}
	if got := b.Len(); got != 2 {
		t.Errorf("after the sweep: Len = %d, want 2 (a and d)", got)
	}
}

// TestTollboothBudget_Memory measures the heap after a million distinct
// clients. Run it with
//
//	GOCOLYTICS_RATELIMIT_MEMORY=1 go test -run TestTollboothBudget_Memory -v ./ingest/
func TestTollboothBudget_Memory(t *testing.T) {
	if os.Getenv("GOCOLYTICS_RATELIMIT_MEMORY") == "" {
		t.Skip("set GOCOLYTICS_RATELIMIT_MEMORY=1 to measure the memory of a million clients")
	}
	const n = 1_000_000
	for _, tc := range []struct {
		rates string
		max   int
	}{
		{"60/minute", ingest.DefaultRateLimitClients},
		{"10/second;60/minute", ingest.DefaultRateLimitClients},
		{"60/minute", n},
	} {
		heap := func() uint64 {
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			return m.HeapAlloc
		}
		before := heap()
		b := ingest.NewTollboothBudget(mustRates(t, tc.rates), ingest.TollboothOptions{MaxClients: tc.max})
		for i := range n {
			a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			b.Allow(ingest.ClientKey(a))
		}
		after := heap()
		t.Logf("%d distinct clients, RATE_LIMIT=%s, cap %d: %d tracked, heap %.1f MiB (%d bytes a tracked client)",
			n, tc.rates, tc.max, b.Len(), float64(after-before)/(1<<20), (after-before)/uint64(b.Len()))
		runtime.KeepAlive(b)
	}
}

// BenchmarkTollboothBudget_Allow is the rate limit's cost per request: the
// client key and one Allow, over 10,000 clients.
func BenchmarkTollboothBudget_Allow(b *testing.B) {
	budget := ingest.NewTollboothBudget(mustRates(b, "60/minute"), ingest.TollboothOptions{})
	addrs := make([]netip.Addr, 10_000)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			budget.Allow(ingest.ClientKey(addrs[i%len(addrs)]))
			i++
		}
	})
}
