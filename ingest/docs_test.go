package ingest_test

import (
	"strings"
	"testing"

	"github.com/gocolytics/gocolytics/ingest"
)

func TestDocs_Pages(t *testing.T) {
	for _, tc := range []struct {
		name, assets        string
		wantDocs, wantRedoc []string
	}{
		{"CDN", "", []string{
			`<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>`,
			`href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"`,
			`url: '/openapi.json'`, `<div id="swagger-ui">`,
		}, []string{`<script src="https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js">`, `<redoc spec-url="/openapi.json">`}},
		{"self-hosted", "/static/", []string{
			`<script src="/static/swagger-ui-bundle.js"></script>`, `href="/static/swagger-ui.css"`,
		}, []string{`<script src="/static/redoc.standalone.js">`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, ingest.Config{DocsAssetsURL: tc.assets})
			for path, want := range map[string][]string{"/docs": tc.wantDocs, "/redoc": tc.wantRedoc} {
				resp, body := call(t, "GET", s.URL+path, nil, nil)
				if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
					t.Fatalf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
				}
				for _, w := range want {
					if !strings.Contains(body, w) {
						t.Errorf("%s lacks %s", path, w)
					}
				}
			}
		})
	}
}

func TestDocs_Off(t *testing.T) {
	s := startServer(t, ingest.Config{DocsOff: true})
	for _, p := range []string{"/docs", "/redoc", "/openapi.json"} {
		if resp, _ := call(t, "GET", s.URL+p, nil, nil); resp.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	if status, body := s.post(t, "/v1.0/event", event("e", "", testKey)); status != 204 {
		t.Errorf("post: %d %s", status, body)
	}
}
