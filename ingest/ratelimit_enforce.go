package ingest

import (
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// rateLimit is the rate-limit part of a policy.
type rateLimit struct {
	budget  Budget // nil: no limit
	trusted []netip.Prefix
	// local is the in-process budget built from the rates, kept by a
	// reload that does not change them.
	local *TollboothBudget
}

// newRateLimit builds the rate limit of cfg. It keeps old's buckets when the
// rates and options are unchanged, and starts afresh when they changed.
func newRateLimit(cfg Config, old *rateLimit, logger *slog.Logger) *rateLimit {
	rl := &rateLimit{trusted: cfg.TrustedProxies}
	if rl.trusted == nil {
		rl.trusted = defaultTrusted
	}
	opts := TollboothOptions{MaxClients: orDefault(cfg.RateLimitClients, DefaultRateLimitClients), Logger: logger}
	switch {
	case cfg.Budget != nil:
		rl.budget = cfg.Budget
	case len(cfg.Rates) == 0:
	case old != nil && old.local != nil && slices.Equal(old.local.rates, cfg.Rates) && old.local.opts.MaxClients == opts.MaxClients:
		rl.local, rl.budget = old.local, old.local
	default:
		rl.local = NewTollboothBudget(cfg.Rates, opts)
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
	ok, r, wait := rl.budget.Allow(ClientKey(requestClient(ctx, rl.trusted)))
	if ok {
		return true
	}
	secs := max(int64((wait+time.Second-1)/time.Second), 1)
	ctx.Response.Header.Set("Retry-After", strconv.FormatInt(secs, 10))
	writeDetail(ctx, fasthttp.StatusTooManyRequests, "Rate limit exceeded: "+r.String())
	return false
}
