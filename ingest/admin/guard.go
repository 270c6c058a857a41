// Package admin owns who may read and manage data (ADMIN_KEYS, sent as
// "Authorization: Bearer KEY", or a key generated into a file beside the
// database) and the admin HTTP endpoints of getting data out: export and
// erasure. The dashboard guards its routes with the same Guard.
package admin

import (
	"bytes"
	"sync/atomic"

	"github.com/valyala/fasthttp"

	"github.com/gocolytics/gocolytics/ingest"
)

// UnauthorizedBody is the answer to a request without a valid admin key.
const UnauthorizedBody = `{"detail":"Invalid or missing admin key"}`

// Limiter spends one request of a client's admin budget; when it is spent
// it answers the request itself (429) and returns false.
// ingest.RequestLimiter is one.
type Limiter interface {
	Allow(ctx *fasthttp.RequestCtx) bool
}

// Guard checks admin requests: first the admin rate budget (so keys cannot
// be guessed quickly), then the Bearer key, compared in constant time with
// each admin key. API keys (ingest keys) never pass: they ship inside
// games and are public. It is safe for concurrent use; SetKeys applies to
// later requests.
type Guard struct {
	keys    atomic.Pointer[ingest.Keys]
	limiter Limiter
}

// NewGuard returns a Guard accepting keys, rate limited by limiter (nil for
// no limit).
func NewGuard(keys []string, limiter Limiter) *Guard {
	g := &Guard{limiter: limiter}
	g.SetKeys(keys)
	return g
}

// SetKeys replaces the accepted admin keys (on reload).
func (g *Guard) SetKeys(keys []string) {
	g.keys.Store(ingest.NewKeys(keys))
}

// Allow says whether ctx may go on. When not, it has answered: 429 from the
// limiter, or 401 {"detail":"Invalid or missing admin key"}.
func (g *Guard) Allow(ctx *fasthttp.RequestCtx) bool {
	if g.limiter != nil && !g.limiter.Allow(ctx) {
		return false
	}
	if g.keys.Load().Valid(bearer(ctx)) {
		return true
	}
	ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, "Bearer")
	ctx.SetStatusCode(fasthttp.StatusUnauthorized)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(UnauthorizedBody)
	return false
}

// Wrap returns h guarded by Allow.
func (g *Guard) Wrap(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if g.Allow(ctx) {
			h(ctx)
		}
	}
}

// bearer is the key of an "Authorization: Bearer KEY" header (the scheme in
// any case), or nil. The key is never copied, logged or echoed.
func bearer(ctx *fasthttp.RequestCtx) []byte {
	h := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	const scheme = "bearer "
	if len(h) <= len(scheme) || !bytes.EqualFold(h[:len(scheme)], []byte(scheme)) {
		return nil
	}
	k := bytes.TrimSpace(h[len(scheme):])
	if len(k) == 0 {
		return nil
	}
	return k
}
