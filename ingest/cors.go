package ingest

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
)

// CORSMaxAge is how long, in seconds, a browser may cache a preflight
// answer (Chromium caps it at two hours).
const CORSMaxAge = 7200

// corsMethods are the methods a preflight allows on the ingest paths.
const corsMethods = "POST, OPTIONS"

// corsHeaders are the request headers a preflight allows when the browser
// did not name the ones it wants.
const corsHeaders = "Content-Type, Content-Encoding"

// cors is the parsed CORS_ORIGINS setting.
type cors struct {
	any     bool
	origins map[string]bool
}

// newCORS reads the allowed origins: nil or a list holding "*" allows any
// origin; an empty non-nil list allows none (no CORS headers are sent).
func newCORS(origins []string) *cors {
	c := &cors{any: origins == nil, origins: map[string]bool{}}
	for _, o := range origins {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "*" {
			c.any = true
		}
		if o != "" {
			c.origins[o] = true
		}
	}
	return c
}

// isIngestPath says whether a (cleaned) path is one of the ingest endpoints,
// the only ones that answer browsers across origins.
func isIngestPath(p []byte) bool {
	return string(p) == "/v1.0/event" || string(p) == "/v1.0/events"
}

// addCORS sets the response headers that let a page from an allowed origin
// read the answer, whatever its status: a game can then tell a stored
// event from a rejected one.
func (c *cors) addCORS(ctx *fasthttp.RequestCtx) {
	if c.any {
		ctx.Response.Header.Set(fasthttp.HeaderAccessControlAllowOrigin, "*")
		return
	}
	if len(c.origins) == 0 {
		return
	}
	ctx.Response.Header.Add(fasthttp.HeaderVary, "Origin")
	if origin := ctx.Request.Header.Peek(fasthttp.HeaderOrigin); len(origin) > 0 && c.origins[string(origin)] {
		ctx.Response.Header.SetBytesV(fasthttp.HeaderAccessControlAllowOrigin, origin)
	}
}

// preflight answers OPTIONS on an ingest path. A CORS preflight from an
// allowed origin gets 204 with the methods, headers and max-age; one from
// another origin 403; a plain OPTIONS (no Origin) 204 with Allow.
func (s *Server) preflight(ctx *fasthttp.RequestCtx) {
	c := s.cors.Load()
	ctx.Response.Header.Set(fasthttp.HeaderAllow, corsMethods)
	origin := ctx.Request.Header.Peek(fasthttp.HeaderOrigin)
	if len(origin) == 0 {
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	}
	if !c.any && !c.origins[string(origin)] {
		if len(c.origins) > 0 {
			ctx.Response.Header.Add(fasthttp.HeaderVary, "Origin")
		}
		setReason(ctx, "cors_origin")
		writeDetail(ctx, fasthttp.StatusForbidden, "Origin not allowed: add it to CORS_ORIGINS")
		return
	}
	c.addCORS(ctx)
	ctx.Response.Header.Set(fasthttp.HeaderAccessControlAllowMethods, corsMethods)
	if h := ctx.Request.Header.Peek(fasthttp.HeaderAccessControlRequestHeaders); len(h) > 0 && isHeaderList(h) {
		// Nothing here rides on cookies or credentials, so whatever
		// headers the page wants to send may come.
		ctx.Response.Header.SetBytesV(fasthttp.HeaderAccessControlAllowHeaders, h)
		ctx.Response.Header.Add(fasthttp.HeaderVary, "Access-Control-Request-Headers")
	} else {
		ctx.Response.Header.Set(fasthttp.HeaderAccessControlAllowHeaders, corsHeaders)
	}
	ctx.Response.Header.Set(fasthttp.HeaderAccessControlMaxAge, strconv.Itoa(CORSMaxAge))
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

// isHeaderList says whether h is a comma-separated list of header names,
// so that nothing else is echoed back.
func isHeaderList(h []byte) bool {
	for _, name := range bytes.Split(h, []byte(",")) {
		name = bytes.TrimSpace(name)
		if len(name) == 0 {
			return false
		}
		for _, c := range name {
			if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				return false
			}
		}
	}
	return true
}
