package ratelimit

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
)

// DefaultTrustedProxies is the default of TRUSTED_PROXIES: loopback only,
// as uvicorn's default, so that a reverse proxy on the same machine works
// without a setting.
const DefaultTrustedProxies = "127.0.0.1,::1"

// ClientIPHeader is the one header a trusted proxy names the client in
// (CLIENT_IP_HEADER). Only that header is read, and only from a peer in
// TRUSTED_PROXIES.
type ClientIPHeader int

const (
	// HeaderNone takes the TCP peer as the client and reads no header:
	// the default, since a loopback forwarder that adds nothing (ssh -R,
	// socat, stunnel, haproxy in TCP mode) would otherwise pass on
	// whatever a client wrote.
	HeaderNone ClientIPHeader = iota
	// HeaderForwardedFor reads X-Forwarded-For: the rightmost hop that is
	// not a trusted proxy.
	HeaderForwardedFor
	// HeaderRealIP reads X-Real-IP.
	HeaderRealIP
)

// ParseClientIPHeader reads a CLIENT_IP_HEADER value: X-Forwarded-For,
// X-Real-IP or none (any case); empty is none.
func ParseClientIPHeader(s string) (ClientIPHeader, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "none":
		return HeaderNone, nil
	case "x-forwarded-for":
		return HeaderForwardedFor, nil
	case "x-real-ip":
		return HeaderRealIP, nil
	}
	return HeaderNone, fmt.Errorf("%q is not X-Forwarded-For, X-Real-IP or none", s)
}

// String is the header's name, or "none".
func (h ClientIPHeader) String() string {
	switch h {
	case HeaderForwardedFor:
		return "X-Forwarded-For"
	case HeaderRealIP:
		return "X-Real-IP"
	}
	return "none"
}

// DefaultTrusted is DefaultTrustedProxies, parsed.
func DefaultTrusted() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("127.0.0.1/32"),
		netip.MustParsePrefix("::1/128"),
	}
}

// ParseTrustedProxies reads a TRUSTED_PROXIES value: addresses or CIDR
// prefixes separated by commas or white space, such as "10.0.0.0/8 ::1". An
// empty value trusts no proxy and returns an empty, non-nil slice (a nil
// ingest.Config.TrustedProxies means the default).
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	out := []netip.Prefix{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or a CIDR prefix such as 10.0.0.0/8", f)
			}
			if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or a CIDR prefix such as 10.0.0.0/8", f)
		}
		a = Plain(a)
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Plain drops what does not identify a host: the IPv6 zone and the IPv4-in-
// IPv6 mapping.
func Plain(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}

// IsTrusted says whether a is in one of the trusted prefixes.
func IsTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientAddr is the address whose budget a request spends. It is peer, the
// TCP peer, unless peer is a trusted proxy; then it is the rightmost
// address of the X-Forwarded-For lines (forwardedFor, in the order
// received) that is not itself trusted, or, without X-Forwarded-For, the
// X-Real-IP address. Headers from an untrusted peer are ignored, so a client
// cannot mint a fresh budget by sending them.
//
// An entry that is not an address (such as "unknown") ends the walk: the
// nearest trusted hop to its right stands for the client, since whatever
// lies left of it was written by someone we do not trust. When every hop is
// trusted, the leftmost one is the client.
func ClientAddr(peer netip.Addr, forwardedFor [][]byte, realIP []byte, trusted []netip.Prefix) netip.Addr {
	peer = Plain(peer)
	if !IsTrusted(peer, trusted) {
		return peer
	}
	hop, seen := peer, false
	for i := len(forwardedFor) - 1; i >= 0; i-- {
		line := forwardedFor[i]
		for len(line) > 0 {
			j := bytes.LastIndexByte(line, ',')
			entry := bytes.TrimSpace(line[j+1:])
			line = line[:max(j, 0)]
			if len(entry) == 0 {
				continue
			}
			a, ok := parseHop(entry)
			if !ok {
				return hop
			}
			if !IsTrusted(a, trusted) {
				return a
			}
			hop, seen = a, true
		}
	}
	if seen {
		return hop
	}
	if a, ok := parseHop(bytes.TrimSpace(realIP)); ok {
		return a
	}
	return peer
}

// parseHop reads one forwarded address: "192.0.2.7", "2001:db8::7", or
// either with a port ("192.0.2.7:4711", "[2001:db8::7]:4711").
func parseHop(b []byte) (netip.Addr, bool) {
	if len(b) == 0 {
		return netip.Addr{}, false
	}
	s := string(b)
	if a, err := netip.ParseAddr(s); err == nil {
		return Plain(a), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return Plain(ap.Addr()), true
	}
	return netip.Addr{}, false
}

// ClientPrefix is what one client is: the address itself for IPv4, its /64
// prefix for IPv6, since one host is usually given a whole /64 and may use
// any address in it. The rate limit and the connection cap both count by it.
func ClientPrefix(a netip.Addr) netip.Prefix {
	a = Plain(a)
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, 32)
}

// ClientKey is the budget key of a client address (ClientPrefix): the
// address for IPv4 ("192.0.2.7"), the /64 prefix for IPv6
// ("2001:db8:1:2::/64").
func ClientKey(a netip.Addr) string {
	p := ClientPrefix(a)
	if p.Addr().Is6() {
		return p.String()
	}
	return p.Addr().String()
}
