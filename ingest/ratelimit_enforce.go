package ingest

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/gocolytics/gocolytics/ingest/ratelimit"
)

// rateLimit is the rate-limit part of a policy.
type rateLimit struct {
	budget  ratelimit.Budget // nil: no limit
	trusted []netip.Prefix
	header  ratelimit.ClientIPHeader
	// name is header's name, chosen once here, not per request.
	name []byte
	// local is the in-process budget built from the rates, kept by a
	// reload that does not change them.
	local *ratelimit.LocalBudget
}

// newRateLimit builds the rate limit of cfg. It keeps old's buckets when the
// rates and options are unchanged, and starts afresh when they changed.
func newRateLimit(cfg Config, old *rateLimit, logger *slog.Logger) *rateLimit {
	rl := &rateLimit{trusted: cfg.TrustedProxies, header: cfg.ClientIPHeader, name: []byte(cfg.ClientIPHeader.String())}
	if rl.trusted == nil {
		rl.trusted = ratelimit.DefaultTrusted()
	}
	if cfg.Budget != nil {
		rl.budget = cfg.Budget
		return rl
	}
	var prev *ratelimit.LocalBudget
	if old != nil {
		prev = old.local
	}
	rl.local = ratelimit.Rebuild(prev, cfg.Rates, ratelimit.LocalOptions{MaxClients: cfg.RateLimitClients, Logger: logger})
	if rl.local != nil {
		rl.budget = rl.local
	}
	return rl
}

// rateLimitFor is the rate limit of cfg, keeping the current buckets where
// it may.
func (s *Server) rateLimitFor(cfg Config) *rateLimit {
	var old *rateLimit
	if p := s.policy.Load(); p != nil {
		old = p.rateLimit
	}
	return newRateLimit(cfg, old, s.logger)
}

// allow spends one request of the client's budget. When it is spent, allow
// answers 429 with the exceeded rate and a Retry-After in whole seconds, and
// returns false.
func (rl *rateLimit) allow(ctx *fasthttp.RequestCtx) bool {
	if rl == nil || rl.budget == nil {
		return true
	}
	ok, r, wait := rl.budget.Allow(ratelimit.ClientKey(rl.client(ctx)))
	if ok {
		return true
	}
	secs := max(int64((wait+time.Second-1)/time.Second), 1)
	ctx.Response.Header.Set("Retry-After", strconv.FormatInt(secs, 10))
	writeDetail(ctx, fasthttp.StatusTooManyRequests, "Rate limit exceeded: "+r.String())
	return false
}

// peerAddr is the TCP peer of a request. A peer on a Unix socket is a local
// process, like a loopback peer, and counts as 127.0.0.1.
func peerAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	if tcp, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		return ratelimit.Plain(tcp.AddrPort().Addr())
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

// client is the address whose budget the request spends: the TCP peer,
// or, from a trusted proxy, the address in the one header CLIENT_IP_HEADER
// names (read from the header block only, never from trailers, in the
// order received). No other header is looked at.
func (rl *rateLimit) client(ctx *fasthttp.RequestCtx) netip.Addr {
	peer := peerAddr(ctx)
	if rl.header == ratelimit.HeaderNone || !ratelimit.IsTrusted(peer, rl.trusted) {
		return peer
	}
	var forwardedFor [][]byte
	var realIP []byte
	for k, v := range ctx.Request.Header.AllInOrder() {
		if !bytes.EqualFold(k, rl.name) {
			continue
		}
		if rl.header == ratelimit.HeaderRealIP {
			realIP = v
		} else {
			forwardedFor = append(forwardedFor, v)
		}
	}
	return ratelimit.ClientAddr(peer, forwardedFor, realIP, rl.trusted)
}
