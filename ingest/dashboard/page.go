package dashboard

import (
	"embed"
	"io/fs"
	"path"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/gocolytics/gocolytics/ingest"
)

var notFound = &ingest.Problem{Status: fasthttp.StatusNotFound, Detail: "Not Found"}

// assets are the page and what it loads. uPlot (MIT, see
// assets/uPlot.LICENSE) is vendored from its npm package, version
// UPlotVersion: the dist files uPlot.iife.min.js and uPlot.min.css.
//
//go:embed assets
var assets embed.FS

// UPlotVersion is the vendored chart library's version.
const UPlotVersion = "1.6.32"

// PagePath is the dashboard's address; its assets are under it.
const PagePath = "/dashboard"

// contentSecurityPolicy allows the page nothing but its own scripts,
// styles and API: no inline script, no foreign origin, no framing.
// Inline styles set through the DOM (uPlot sizes its canvas that way) are
// not governed by style-src; style attributes in markup would be.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// setSecurityHeaders adds what every dashboard and stats answer carries: the
// admin key sits in the page's URL fragment and storage, so nothing may leak
// it through a Referer, a frame or a sniffed content type.
func setSecurityHeaders(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// registerPage serves the page at PagePath and its assets at
// PagePath/NAME. The page holds no data: without a key it shows a prompt,
// and its scripts fetch the stats API with the key.
func (h *Handlers) registerPage(r *router.Router) {
	serve := func(ctx *fasthttp.RequestCtx, name string) {
		b, err := fs.ReadFile(assets, "assets/"+name)
		ct, known := contentTypes[path.Ext(name)]
		if err != nil || !known {
			writeProblem(ctx, notFound)
			return
		}
		setSecurityHeaders(ctx)
		ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-cache")
		ctx.SetContentType(ct)
		ctx.SetBody(b)
	}
	r.GET(PagePath, func(ctx *fasthttp.RequestCtx) { serve(ctx, "index.html") })
	r.GET(PagePath+"/{name}", func(ctx *fasthttp.RequestCtx) {
		name, _ := ctx.UserValue("name").(string)
		if name == "index.html" || path.Base(name) != name {
			writeProblem(ctx, notFound)
			return
		}
		serve(ctx, name)
	})
}
