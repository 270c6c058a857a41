package ingest_test

import (
	"strings"
	"testing"

	"github.com/gocolytics/gocolytics/ingest"
)

func TestCORS_AnyOrigin(t *testing.T) {
	s := startServer(t, ingest.Config{Limits: ingest.Limits{MaxBodyBytes: 1024}})
	origin := map[string]string{"Origin": "https://game.example"}
	for _, tc := range []struct {
		name, path, body string
		want             int
	}{
		{"stored", "/v1.0/event", event("startup", "", testKey), 204},
		{"batch stored", "/v1.0/events", "[" + event("startup", "", testKey) + "]", 204},
		{"bad key", "/v1.0/event", event("startup", "", "nope"), 401},
		{"malformed", "/v1.0/event", "{", 422},
		{"body too large", "/v1.0/events", `["` + strings.Repeat("x", 2048) + `"]`, 413},
		{"wrong method", "/v1.0/event", "", 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := "POST"
			if tc.want == 405 {
				method = "GET"
			}
			resp, body := call(t, method, s.URL+tc.path, origin, []byte(tc.body))
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.want)
			}
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
				t.Errorf("Access-Control-Allow-Origin %q, want *", got)
			}
			if got := resp.Header.Values("Vary"); len(got) != 0 {
				t.Errorf("Vary %q, want none with *", got)
			}
		})
	}
	if got := len(s.rows(t)); got != 2 {
		t.Errorf("%d rows stored, want 2", got)
	}
	// Only the ingest paths answer across origins.
	resp, _ := call(t, "GET", s.URL+"/openapi.json", origin, nil)
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("/openapi.json: Access-Control-Allow-Origin %q, want none", got)
	}
}

func TestCORS_OriginList(t *testing.T) {
	allowed := "http://127.0.0.1:8060"
	s := startServer(t, ingest.Config{CORSOrigins: []string{allowed, "https://other.example/"}})
	for _, tc := range []struct {
		origin, want string
	}{
		{allowed, allowed},
		{"https://other.example", "https://other.example"},
		{"https://evil.example", ""},
		{"", ""},
	} {
		hdr := map[string]string{}
		if tc.origin != "" {
			hdr["Origin"] = tc.origin
		}
		for _, ev := range []string{event("startup", "", testKey), event("startup", "", "nope")} {
			resp, _ := call(t, "POST", s.URL+"/v1.0/event", hdr, []byte(ev))
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tc.want {
				t.Errorf("origin %q, status %d: Access-Control-Allow-Origin %q, want %q", tc.origin, resp.StatusCode, got, tc.want)
			}
			if got := resp.Header.Get("Vary"); got != "Origin" {
				t.Errorf("origin %q: Vary %q, want Origin", tc.origin, got)
			}
		}
	}
}

func TestCORS_None(t *testing.T) {
	s := startServer(t, ingest.Config{CORSOrigins: []string{}})
	resp, _ := call(t, "POST", s.URL+"/v1.0/event", map[string]string{"Origin": "https://game.example"}, []byte(event("e", "", testKey)))
	if resp.StatusCode != 204 {
		t.Fatalf("status %d, want 204", resp.StatusCode)
	}
	for _, h := range []string{"Access-Control-Allow-Origin", "Vary"} {
		if got := resp.Header.Get(h); got != "" {
			t.Errorf("%s %q, want none", h, got)
		}
	}
}

func TestCORS_Preflight(t *testing.T) {
	allowed := "https://game.example"
	s := startServer(t, ingest.Config{CORSOrigins: []string{allowed}})
	preflight := func(path, origin, headers string) (int, map[string]string, string) {
		hdr := map[string]string{"Access-Control-Request-Method": "POST"}
		if origin != "" {
			hdr["Origin"] = origin
		}
		if headers != "" {
			hdr["Access-Control-Request-Headers"] = headers
		}
		resp, body := call(t, "OPTIONS", s.URL+path, hdr, nil)
		got := map[string]string{}
		for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age", "Allow"} {
			got[h] = resp.Header.Get(h)
		}
		return resp.StatusCode, got, body
	}

	for _, path := range []string{"/v1.0/event", "/v1.0/events", "/v1.0/events/"} {
		status, h, _ := preflight(path, allowed, "content-type")
		if status != 204 {
			t.Fatalf("%s: preflight status %d, want 204", path, status)
		}
		want := map[string]string{
			"Access-Control-Allow-Origin":  allowed,
			"Access-Control-Allow-Methods": "POST, OPTIONS",
			"Access-Control-Allow-Headers": "content-type",
			"Access-Control-Max-Age":       "7200",
			"Allow":                        "POST, OPTIONS",
		}
		for k, v := range want {
			if h[k] != v {
				t.Errorf("%s: %s %q, want %q", path, k, h[k], v)
			}
		}
	}
	if _, h, _ := preflight("/v1.0/event", allowed, ""); h["Access-Control-Allow-Headers"] != "Content-Type, Content-Encoding" {
		t.Errorf("Access-Control-Allow-Headers %q without a request for headers", h["Access-Control-Allow-Headers"])
	}
	if _, h, _ := preflight("/v1.0/event", allowed, "content-type, x-bad;header"); h["Access-Control-Allow-Headers"] == "" || strings.Contains(h["Access-Control-Allow-Headers"], "bad") {
		t.Errorf("Access-Control-Allow-Headers %q echoed a malformed list", h["Access-Control-Allow-Headers"])
	}
	status, h, body := preflight("/v1.0/event", "https://evil.example", "")
	if status != 403 || h["Access-Control-Allow-Origin"] != "" || !strings.Contains(body, `"detail"`) {
		t.Errorf("preflight from another origin: status %d, allow-origin %q, body %s; want 403, none, a detail", status, h["Access-Control-Allow-Origin"], body)
	}
	if status, h, _ := preflight("/v1.0/event", "", ""); status != 204 || h["Allow"] != "POST, OPTIONS" {
		t.Errorf("plain OPTIONS: status %d, Allow %q; want 204, POST, OPTIONS", status, h["Allow"])
	}
	if status, _, _ := preflight("/docs", allowed, ""); status != 405 {
		t.Errorf("OPTIONS /docs: status %d, want 405", status)
	}
	if got := len(s.rows(t)); got != 0 {
		t.Errorf("%d rows after preflights, want 0", got)
	}
}
