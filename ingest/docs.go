package ingest

import (
	_ "embed"
	"html"
	"strings"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"
)

// openAPI is the OpenAPI 3.1 description of the ingest endpoints, served at
// /openapi.json.
//
//go:embed openapi.json
var openAPI []byte

// Where the documentation pages load their scripts from by default: the
// public CDN and versions FastAPI uses.
const (
	SwaggerUIAssetsURL = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"
	RedocAssetsURL     = "https://cdn.jsdelivr.net/npm/redoc@2/bundles"
)

// swaggerPage is FastAPI's Swagger UI page; {{swagger}} stands for where
// the assets are.
const swaggerPage = `<!DOCTYPE html>
<html>
<head>
<link type="text/css" rel="stylesheet" href="{{swagger}}/swagger-ui.css">
<link rel="shortcut icon" href="{{swagger}}/favicon-32x32.png">
<title>gocolytics - Swagger UI</title>
</head>
<body>
<div id="swagger-ui">
</div>
<script src="{{swagger}}/swagger-ui-bundle.js"></script>
<!-- ` + "`SwaggerUIBundle`" + ` is now available on the page -->
<script>
const ui = SwaggerUIBundle({
    url: '/openapi.json',
"dom_id": "#swagger-ui",
"layout": "BaseLayout",
"deepLinking": true,
"showExtensions": true,
"showCommonExtensions": true,
    presets: [
        SwaggerUIBundle.presets.apis,
        SwaggerUIBundle.SwaggerUIStandalonePreset
        ],
    })
</script>
</body>
</html>
`

// redocPage is FastAPI's ReDoc page.
const redocPage = `<!DOCTYPE html>
<html>
<head>
<title>gocolytics - ReDoc</title>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body {
    margin: 0;
    padding: 0;
  }
</style>
</head>
<body>
<noscript>
    ReDoc requires Javascript to function. Please enable it to browse the documentation.
</noscript>
<redoc spec-url="/openapi.json"></redoc>
<script src="{{redoc}}/redoc.standalone.js"> </script>
</body>
</html>
`

// addDocs serves /openapi.json, /docs (Swagger UI) and /redoc. assets is
// where self-hosted copies of swagger-ui-dist's swagger-ui-bundle.js,
// swagger-ui.css and favicon-32x32.png and of redoc's redoc.standalone.js
// are; empty means the public CDN.
func (s *Server) addDocs(r *router.Router, assets string) {
	swagger, redoc := SwaggerUIAssetsURL, RedocAssetsURL
	if assets = strings.TrimRight(assets, "/"); assets != "" {
		swagger, redoc = assets, assets
	}
	rep := strings.NewReplacer("{{swagger}}", html.EscapeString(swagger), "{{redoc}}", html.EscapeString(redoc))
	docs, re := []byte(rep.Replace(swaggerPage)), []byte(rep.Replace(redocPage))
	page := func(body []byte) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/html; charset=utf-8")
			ctx.SetBody(body)
		}
	}
	r.GET("/openapi.json", func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBody(openAPI)
	})
	r.GET("/docs", page(docs))
	r.GET("/redoc", page(re))
}
