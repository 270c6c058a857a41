package ratelimit_test

import (
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/ingest/ratelimit"
)

func TestParseRateLimit(t *testing.T) {
	r := func(count, mult int, unit string) ratelimit.Rate {
		return ratelimit.Rate{Count: count, Multiplier: mult, Unit: unit}
	}
	for _, tc := range []struct {
		in   string
		want []ratelimit.Rate
	}{
		{"60/minute", []ratelimit.Rate{r(60, 1, "minute")}},
		{"60 per minute", []ratelimit.Rate{r(60, 1, "minute")}},
		{"60 PER Minute", []ratelimit.Rate{r(60, 1, "minute")}},
		{"10/second", []ratelimit.Rate{r(10, 1, "second")}},
		{"1000/day", []ratelimit.Rate{r(1000, 1, "day")}},
		{"5 per 2 hours", []ratelimit.Rate{r(5, 2, "hour")}},
		{"5/2hours", []ratelimit.Rate{r(5, 2, "hour")}},
		{"3 per 1 months", []ratelimit.Rate{r(3, 1, "month")}},
		{"1/year", []ratelimit.Rate{r(1, 1, "year")}},
		{"  60/minute  ", []ratelimit.Rate{r(60, 1, "minute")}},
		{"10/second;100/minute", []ratelimit.Rate{r(10, 1, "second"), r(100, 1, "minute")}},
		{"10/second, 100 per minute", []ratelimit.Rate{r(10, 1, "second"), r(100, 1, "minute")}},
		{"10/second|100/minute;", []ratelimit.Rate{r(10, 1, "second"), r(100, 1, "minute")}},
		{"", nil},
		{"   ", nil},
		{"off", nil},
		{"OFF", nil},
	} {
		got, err := ratelimit.Parse(tc.in)
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
		if got, err := ratelimit.Parse(in); err == nil {
			t.Errorf("ParseRateLimit(%q) = %v, want an error", in, got)
		}
	}
}

func TestRate_String(t *testing.T) {
	rates, err := ratelimit.Parse("60/minute;5 per 2 hours")
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
		{ratelimit.DefaultTrustedProxies, "127.0.0.1/32 ::1/128"},
		{"10.0.0.1", "10.0.0.1/32"},
		{"10.1.2.3/8, 192.0.2.0/24\t2001:db8::/32", "10.0.0.0/8 192.0.2.0/24 2001:db8::/32"},
		{"::ffff:10.0.0.1", "10.0.0.1/32"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"", ""},
	} {
		got, err := ratelimit.ParseTrustedProxies(tc.in)
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
		if _, err := ratelimit.ParseTrustedProxies(in); err == nil {
			t.Errorf("ParseTrustedProxies(%q): want an error", in)
		}
	}
}

func TestClientKey(t *testing.T) {
	key := func(s string) string { return ratelimit.ClientKey(netip.MustParseAddr(s)) }
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
	trusted, err := ratelimit.ParseTrustedProxies("127.0.0.0/8 ::1 10.0.0.0/8")
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
		got := ratelimit.ClientAddr(netip.MustParseAddr(tc.peer), xff, []byte(tc.realIP), trusted)
		if got.String() != tc.want {
			t.Errorf("%s: ClientAddr = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func mustRates(tb testing.TB, s string) []ratelimit.Rate {
	tb.Helper()
	r, err := ratelimit.Parse(s)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func TestLocalBudget_Allow(t *testing.T) {
	b := ratelimit.NewLocalBudget(mustRates(t, "2 per 1 hour; 3 per 1 day"), ratelimit.LocalOptions{})
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

func TestLocalBudget_CapAndExpiry(t *testing.T) {
	const ttl = 200 * time.Millisecond
	b := ratelimit.NewLocalBudget(mustRates(t, "1 per 1 hour"), ratelimit.LocalOptions{MaxClients: 2, TTL: ttl})
	allow := func(c string) bool { ok, _, _ := b.Allow(c); return ok }
	if !allow("192.0.2.1") || !allow("192.0.2.2") {
		t.Fatal("first requests refused")
	}
	// Full: a newcomer spends its network's budget (a /24 here); tracked
	// clients keep theirs.
	if !allow("198.51.100.3") {
		t.Error("the first newcomer of a network should spend the network's budget")
	}
	if allow("198.51.100.4") {
		t.Error("a second newcomer of the same /24 should find its budget spent")
	}
	if !allow("203.0.113.5") {
		t.Error("a newcomer of another network was refused")
	}
	if allow("192.0.2.1") {
		t.Error("a tracked client lost its budget")
	}
	if got := b.Len(); got != 2 {
		t.Errorf("Len = %d, want 2 (the cap)", got)
	}
	// A TTL after its last request the sweep frees the table: the /24's
	// client gets a budget of its own.
	time.Sleep(ttl + ttl/2)
	if !allow("198.51.100.4") {
		t.Error("after the TTL: newcomer refused")
	}
}

// TestLocalBudget_StarvedOverflow is the first rate-limit attack:
// with RATE_LIMIT_CLIENTS=3 and 5/minute, three addresses fill the table
// and a fourth spends five requests; before, every newcomer then shared
// that one spent overflow budget and got 429 on its first request. Now
// only the attacker's own network is spent.
func TestLocalBudget_StarvedOverflow(t *testing.T) {
	b := ratelimit.NewLocalBudget(mustRates(t, "5/minute"), ratelimit.LocalOptions{MaxClients: 3})
	for _, c := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"} {
		b.Allow(c)
	}
	for range 5 {
		b.Allow("198.51.100.4")
	}
	if ok, _, _ := b.Allow("198.51.100.4"); ok {
		t.Error("the attacker's sixth request was allowed")
	}
	for _, c := range []string{"192.0.2.7", "203.0.113.8", "2001:db8:1:2::/64", "2001:db8:2:2::/64"} {
		if ok, _, _ := b.Allow(c); !ok {
			t.Errorf("brand-new client %s refused on its first request", c)
		}
	}
}

// TestLocalBudget_ExpiryFromLastUse is the second rate-limit
// attack: a client that never pauses got a full bucket again once per TTL,
// counted from the bucket's creation. Now the TTL counts from the last
// request, so a client that keeps sending keeps its empty bucket.
func TestLocalBudget_ExpiryFromLastUse(t *testing.T) {
	const ttl = 200 * time.Millisecond
	// A loaded machine (-race, CI) can stall this goroutine for longer
	// than the TTL between two requests; such a round proves nothing, so
	// it is run again, a few times at most.
	for round := 0; ; round++ {
		b := ratelimit.NewLocalBudget(mustRates(t, "1 per 1 hour"), ratelimit.LocalOptions{TTL: ttl})
		allowed, stalled := 0, false
		last := time.Now()
		for deadline := last.Add(5 * ttl); time.Now().Before(deadline); time.Sleep(ttl / 20) {
			if time.Since(last) >= ttl/2 {
				stalled = true
				break
			}
			if ok, _, _ := b.Allow("192.0.2.1"); ok {
				allowed++
			}
			last = time.Now()
		}
		if stalled && round < 5 {
			continue
		}
		if stalled {
			t.Fatal("the test goroutine stalled for half a TTL in every round; nothing shown")
		}
		if allowed != 1 {
			t.Errorf("a client sending without a pause for 5 TTLs got %d requests through, want 1", allowed)
		}
		return
	}
}

// TestLocalBudget_Memory measures the heap after a million distinct
// clients. Run it with
//
//	GOCOLYTICS_RATELIMIT_MEMORY=1 go test -run TestLocalBudget_Memory -v ./ingest/ratelimit/
func TestLocalBudget_Memory(t *testing.T) {
	if os.Getenv("GOCOLYTICS_RATELIMIT_MEMORY") == "" {
		t.Skip("set GOCOLYTICS_RATELIMIT_MEMORY=1 to measure the memory of a million clients")
	}
	const n = 1_000_000
	for _, tc := range []struct {
		rates string
		max   int
	}{
		{"60/minute", ratelimit.DefaultMaxClients},
		{"10/second;60/minute", ratelimit.DefaultMaxClients},
		{"60/minute", n},
	} {
		heap := func() uint64 {
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			return m.HeapAlloc
		}
		before := heap()
		b := ratelimit.NewLocalBudget(mustRates(t, tc.rates), ratelimit.LocalOptions{MaxClients: tc.max})
		for i := range n {
			a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			b.Allow(ratelimit.ClientKey(a))
		}
		after := heap()
		t.Logf("%d distinct clients, RATE_LIMIT=%s, cap %d: %d tracked, heap %.1f MiB (%d bytes a tracked client)",
			n, tc.rates, tc.max, b.Len(), float64(after-before)/(1<<20), (after-before)/uint64(b.Len()))
		runtime.KeepAlive(b)
	}
}

// BenchmarkLocalBudget_Allow is the rate limit's cost per request: the
// client key and one Allow, over 10,000 clients.
func BenchmarkLocalBudget_Allow(b *testing.B) {
	budget := ratelimit.NewLocalBudget(mustRates(b, "60/minute"), ratelimit.LocalOptions{})
	addrs := make([]netip.Addr, 10_000)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			budget.Allow(ratelimit.ClientKey(addrs[i%len(addrs)]))
			i++
		}
	})
}

// FuzzParseRateLimit: the RATE_LIMIT parser never panics, and what it
// accepts is a usable rate that reads back the same from its own String.
func FuzzParseRateLimit(f *testing.F) {
	for _, s := range []string{"60/minute", "60 per minute", "5 per 2 hours", "10/second; 1000/day", "1/s", "off", "", "0/minute",
		"1 per 99999999999999 years", "3|4,5/hour", " 7 PER 3 Days "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rates, err := ratelimit.Parse(s)
		if err != nil {
			if rates != nil {
				t.Errorf("%q: error %v with rates %v", s, err, rates)
			}
			return
		}
		for _, r := range rates {
			if r.Count < 1 || r.Multiplier < 1 || r.Period() <= 0 {
				t.Errorf("%q: accepted %+v, period %v", s, r, r.Period())
			}
			again, err := ratelimit.Parse(r.String())
			if err != nil || len(again) != 1 || again[0] != r {
				t.Errorf("%q: %+v reads back from %q as %v, %v", s, r, r.String(), again, err)
			}
		}
	})
}
