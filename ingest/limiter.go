package ingest

import (
	"bytes"
	"log/slog"
	"sync/atomic"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"
)

// RequestLimiter is a rate limit on a budget of its own, for routes other
// than ingest's (the admin routes): the same RATE_LIMIT rates, trusted
// proxies and client identification as ingest, and the same 429 answer,
// but separate buckets, so reading data never spends a game's budget nor
// the other way round. In a worker process the buckets are the worker's
// own. It is safe for concurrent use.
type RequestLimiter struct {
	logger *slog.Logger
	rl     atomic.Pointer[rateLimit]
}

// NewRequestLimiter returns the limiter of cfg's rates.
func NewRequestLimiter(cfg Config, logger *slog.Logger) *RequestLimiter {
	if logger == nil {
		logger = slog.Default()
	}
	l := &RequestLimiter{logger: logger.With("component", "admin")}
	l.Reconfigure(cfg)
	return l
}

// Reconfigure applies cfg's rates to later requests, keeping the buckets
// when they are unchanged.
func (l *RequestLimiter) Reconfigure(cfg Config) {
	cfg.Budget = nil
	l.rl.Store(newRateLimit(cfg, l.rl.Load(), l.logger))
}

// Allow spends one request of the client's budget; when it is spent it
// answers 429 with a Retry-After and returns false.
func (l *RequestLimiter) Allow(ctx *fasthttp.RequestCtx) bool {
	return l.rl.Load().allow(ctx)
}

// KeepRawPaths lets paths under prefix reach the router as sent, with their
// percent-escapes (other paths that decode to something else are 404):
// for routes whose last segment is an arbitrary string, such as a user id,
// which their handler decodes itself. Call it before Serve.
func (s *Server) KeepRawPaths(prefix string) {
	s.rawPrefixes = append(s.rawPrefixes, []byte(prefix))
}

func (s *Server) rawPath(p []byte) bool {
	for _, pre := range s.rawPrefixes {
		if bytes.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}

// Router is the server's router, for adding routes of other packages (the
// admin endpoints) before Serve. Their answers are counted in /metrics
// like every other request.
func (s *Server) Router() *router.Router { return s.router }
