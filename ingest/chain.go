package ingest

import (
	"errors"

	"github.com/valyala/fasthttp"
)

// The middleware chain, in the order a request passes it, all in this
// package:
//
//  1. handle (server.go): the path clean-up Pycolytics clients rely on,
//     for the ingest paths only; then the router.
//  2. the route's handler: for ingest (server.go) the rate limit
//     (ratelimit_enforce.go), the body and its encoding (compress.go),
//     decoding (decode.go, scan.go), keys (keys.go) and the commit; CORS
//     preflights (cors.go); docs (docs.go); /healthz and /metrics (ops.go);
//     the admin and dashboard routes registered by their packages.
//  3. finish (below), on every answer, errors of fasthttp's own included:
//     CORS headers on ingest answers (cors.go), the clients answered 429
//     and the request's count (metrics.go).
//
// The METRICS_ADDR listener runs /healthz and /metrics through opsChain:
// its router, then the request's count.

// chain wraps the server's handler and error handler with finish.
func (s *Server) chain() {
	next, nextErr := s.srv.Handler, s.srv.ErrorHandler
	s.srv.Handler = func(ctx *fasthttp.RequestCtx) {
		next(ctx)
		s.finish(ctx)
	}
	s.srv.ErrorHandler = func(ctx *fasthttp.RequestCtx, err error) {
		if errors.Is(err, fasthttp.ErrBodyTooLarge) {
			// Refused on its Content-Length before a byte of the body
			// was read: fasthttp closes the connection after the 413.
			setReason(ctx, "body_too_large")
			lingerOnClose(ctx.Conn())
		}
		nextErr(ctx, err)
		s.finish(ctx)
	}
}

// finish adds the CORS headers to an ingest answer, notes a client
// answered 429, and counts the request.
func (s *Server) finish(ctx *fasthttp.RequestCtx) {
	if isIngestPath(ctx.Path()) && !ctx.IsOptions() {
		s.cors.Load().addCORS(ctx)
		if ctx.Response.StatusCode() == fasthttp.StatusTooManyRequests {
			s.noteLimited(ctx)
		}
	}
	s.metrics.countRequest(ctx)
}

// opsChain is the chain of the METRICS_ADDR listener.
func (s *Server) opsChain(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		next(ctx)
		s.metrics.countRequest(ctx)
	}
}
