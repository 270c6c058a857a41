package ingest

import (
	"net/netip"
	"testing"

	"github.com/gocolytics/gocolytics/ingest/ratelimit"
)

// TestConnPrefix: IPv4 connections count per address (ratelimit.ClientPrefix), IPv6 per /64.
func TestConnPrefix(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff"},
		{"fe80::1%eth0", "fe80::2"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
	} {
		if a, b := ratelimit.ClientPrefix(netip.MustParseAddr(tc.a)), ratelimit.ClientPrefix(netip.MustParseAddr(tc.b)); a != b {
			t.Errorf("%s -> %v, %s -> %v: want the same prefix", tc.a, a, tc.b, b)
		}
	}
	for _, tc := range []struct{ a, b string }{
		{"2001:db8:1:2::1", "2001:db8:1:3::1"},
		{"192.0.2.7", "192.0.2.8"},
	} {
		if a, b := ratelimit.ClientPrefix(netip.MustParseAddr(tc.a)), ratelimit.ClientPrefix(netip.MustParseAddr(tc.b)); a == b {
			t.Errorf("%s and %s share %v: want different prefixes", tc.a, tc.b, a)
		}
	}
	c := newConnCap(2)
	k := ratelimit.ClientPrefix(netip.MustParseAddr("2001:db8::1"))
	if !c.admit(k) || !c.admit(ratelimit.ClientPrefix(netip.MustParseAddr("2001:db8::2"))) || c.admit(ratelimit.ClientPrefix(netip.MustParseAddr("2001:db8::3"))) {
		t.Error("a /64 was admitted more than twice, or less")
	}
	c.done(k)
	if !c.admit(k) {
		t.Error("a closed connection's place was not given back")
	}
}
