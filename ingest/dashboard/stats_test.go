package dashboard_test

import (
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/gocolytics/gocolytics/ingest/dashboard"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
)

const novemberQuery = "application=Game&since=2026-11-01&until=2026-11-10"

// TestStatsAPI_Known checks every endpoint's answer over HTTP against the
// dataset's hand-worked figures.
func TestStatsAPI_Known(t *testing.T) {
	base := startDashboard(t, querytest.Known(t))
	for _, tc := range []struct{ path, want string }{
		{"/v1.0/stats?" + novemberQuery, querytest.Want(t, "want-stats-november.json")},
		{"/v1.0/stats?" + novemberQuery + "&platform=Linux", querytest.Want(t, "want-stats-november-linux.json")},
		{"/v1.0/stats/series?" + novemberQuery + "&by=version&platform=Linux", `{"by": "version", "days": ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05", "2026-11-06", "2026-11-07", "2026-11-08", "2026-11-09", "2026-11-10"], "series": [{"name": "1.0", "values": [1, 1, 1, 0, 0, 0, 0, 1, 0, 0]}, {"name": "1.1", "values": [0, 1, 1, 0, 0, 0, 0, 0, 0, 0]}]}`},
		{"/v1.0/stats/funnel?" + novemberQuery + "&steps=tutorial_start,tutorial_end,level_1",
			`[{"step": "tutorial_start", "users": 4}, {"step": "tutorial_end", "users": 3}, {"step": "level_1", "users": 2}]`},
		{"/v1.0/stats/applications", `[
 {"application": "Game", "first_day": "2026-10-06", "last_day": "2026-11-10", "events": 25},
 {"application": "Other", "first_day": "2026-10-01", "last_day": "2026-11-04", "events": 3}]`},
		{"/v1.0/stats/recent?limit=1", `[{"id": 28, "event_type": "level_end", "application": "Game", "version": "1.1", "platform": "Android",
 "user_id": "u4", "session_id": "s9", "value": {"score": 40.5}, "time": "2026-11-10 23:59:59.000000"}]`},
		{"/v1.0/stats/series?" + novemberQuery + "&by=platform", `{"by": "platform",
 "days": ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05", "2026-11-06", "2026-11-07", "2026-11-08", "2026-11-09", "2026-11-10"],
 "series": [{"name": "Linux", "values": [1, 2, 2, 0, 0, 0, 0, 1, 0, 0]}, {"name": "Android", "values": [0, 0, 0, 0, 1, 0, 0, 0, 0, 1]},
            {"name": "Windows", "values": [1, 0, 0, 0, 0, 0, 0, 1, 0, 0]}]}`},
	} {
		code, hdr, body := get(t, base+tc.path, adminKey)
		if code != 200 || hdr.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: %d %s %s", tc.path, code, hdr.Get("Content-Type"), body)
			continue
		}
		querytest.EqualJSON(t, tc.path, body, tc.want)
	}

	// The value statistics of the 2nd, and what was skipped.
	_, _, body := get(t, base+"/v1.0/stats/value?"+novemberQuery+"&event_type=level_end&field=stats.time", adminKey)
	querytest.EqualJSON(t, "value", body, `[
 {"day": "2026-11-01", "count": 0, "skipped": 1, "avg": null, "p50": null, "p95": null, "min": null, "max": null},
 {"day": "2026-11-02", "count": 2, "skipped": 0, "avg": 6.5, "p50": 6.5, "p95": 7.4, "min": 5.5, "max": 7.5},
 {"day": "2026-11-03", "count": 0, "skipped": 0, "avg": null, "p50": null, "p95": null, "min": null, "max": null},
 {"day": "2026-11-04", "count": 0, "skipped": 0, "avg": null, "p50": null, "p95": null, "min": null, "max": null},
 {"day": "2026-11-05", "count": 0, "skipped": 1, "avg": null, "p50": null, "p95": null, "min": null, "max": null},
 {"day": "2026-11-06", "count": 0, "skipped": 0, "avg": null, "p50": null, "p95": null, "min": null, "max": null},
 {"day": "2026-11-07", "count": 0, "skipped": 0, "avg": null, "p50": null, "p95": null, "min": null, "max": null},
 {"day": "2026-11-08", "count": 0, "skipped": 1, "avg": null, "p50": null, "p95": null, "min": null, "max": null},
 {"day": "2026-11-09", "count": 0, "skipped": 0, "avg": null, "p50": null, "p95": null, "min": null, "max": null},
 {"day": "2026-11-10", "count": 0, "skipped": 1, "avg": null, "p50": null, "p95": null, "min": null, "max": null}]`)

	// The version and event type filters, worked out by hand from
	// events.tsv: every figure counts the matching events only, except the
	// "first event ever" of new users (u1's first event, on the 1st, is no
	// level_end: u1 is no new user of the 2nd).
	for _, tc := range []struct{ filter, want string }{
		{"version=1.1", `{"summary": {"users": 3, "new_users": 2, "sessions": 4, "events": 9, "dau": 1, "wau": 2, "mau": 3, "median_session_seconds": 89.5},
 "days": [{"day": "2026-11-01", "users": 0, "new_users": 0, "sessions": 0, "events": 0}, {"day": "2026-11-02", "users": 1, "new_users": 1, "sessions": 1, "events": 4},
  {"day": "2026-11-03", "users": 1, "new_users": 0, "sessions": 1, "events": 1}, {"day": "2026-11-04", "users": 0, "new_users": 0, "sessions": 0, "events": 0},
  {"day": "2026-11-05", "users": 1, "new_users": 0, "sessions": 1, "events": 2}, {"day": "2026-11-06", "users": 0, "new_users": 0, "sessions": 0, "events": 0},
  {"day": "2026-11-07", "users": 0, "new_users": 0, "sessions": 0, "events": 0}, {"day": "2026-11-08", "users": 0, "new_users": 0, "sessions": 0, "events": 0},
  {"day": "2026-11-09", "users": 0, "new_users": 0, "sessions": 0, "events": 0}, {"day": "2026-11-10", "users": 1, "new_users": 1, "sessions": 1, "events": 2}]}`},
		{"event_type=level_end", `{"summary": {"users": 5, "new_users": 3, "sessions": 6, "events": 6, "dau": 1, "wau": 3, "mau": 5, "median_session_seconds": 0},
 "days": [{"day": "2026-11-01", "users": 1, "new_users": 1, "sessions": 1, "events": 1}, {"day": "2026-11-02", "users": 2, "new_users": 1, "sessions": 2, "events": 2},
  {"day": "2026-11-03", "users": 0, "new_users": 0, "sessions": 0, "events": 0}, {"day": "2026-11-04", "users": 0, "new_users": 0, "sessions": 0, "events": 0},
  {"day": "2026-11-05", "users": 1, "new_users": 0, "sessions": 1, "events": 1}, {"day": "2026-11-06", "users": 0, "new_users": 0, "sessions": 0, "events": 0},
  {"day": "2026-11-07", "users": 0, "new_users": 0, "sessions": 0, "events": 0}, {"day": "2026-11-08", "users": 1, "new_users": 0, "sessions": 1, "events": 1},
  {"day": "2026-11-09", "users": 0, "new_users": 0, "sessions": 0, "events": 0}, {"day": "2026-11-10", "users": 1, "new_users": 1, "sessions": 1, "events": 1}]}`},
	} {
		_, _, body := get(t, base+"/v1.0/stats?"+novemberQuery+"&"+tc.filter, adminKey)
		querytest.EqualJSON(t, tc.filter, body[:strings.Index(body, `,"event_types"`)]+"}", tc.want)
	}

	// Without since and until: the 30 days ending today (the 10th).
	_, _, body = get(t, base+"/v1.0/stats?application=Game", adminKey)
	querytest.EqualJSON(t, "default range", body[strings.Index(body, `"summary"`)-1:strings.Index(body, `,"days"`)]+"}",
		`{"summary": {"users": 7, "new_users": 6, "sessions": 11, "events": 24, "dau": 1, "wau": 4, "mau": 7, "median_session_seconds": 59}}`)
}

// TestStatsAPI_Unauthorized: every endpoint answers 401 without the admin
// key, with an ingest key and with a wrong one.
func TestStatsAPI_Unauthorized(t *testing.T) {
	base := startDashboard(t, querytest.Known(t))
	for _, path := range []string{"/v1.0/stats?" + novemberQuery, "/v1.0/stats/funnel?steps=a,b", "/v1.0/stats/value",
		"/v1.0/stats/series?by=version", "/v1.0/stats/recent", "/v1.0/stats/applications"} {
		for _, key := range []string{"", ingestKey, adminKey + "x", "admin-key-for-test"} {
			code, _, body := get(t, base+path, key)
			if code != 401 || body != `{"detail":"Invalid or missing admin key"}` {
				t.Errorf("GET %s with key %q: %d %s", path, key, code, body)
			}
		}
	}
}

// TestStatsAPI_BadParams: 422 in FastAPI's shape, naming the parameter.
func TestStatsAPI_BadParams(t *testing.T) {
	base := startDashboard(t, querytest.Known(t))
	for _, tc := range []struct{ path, param string }{
		{"/v1.0/stats?since=2026-11-01", "application"},
		{"/v1.0/stats?application=Game&since=2026-13-01", "since"},
		{"/v1.0/stats?application=Game&since=yesterday", "since"},
		{"/v1.0/stats?application=Game&until=2026-11-1", "until"},
		{"/v1.0/stats?application=Game&since=2026-11-02&until=2026-11-01", "until"},
		{"/v1.0/stats?application=Game&since=2025-10-06&until=2026-11-10", "until"},
		{"/v1.0/stats?application=" + strings.Repeat("x", dashboard.MaxParamLength+1), "application"},
		{"/v1.0/stats?application=Game&version=%ff", "version"},
		{"/v1.0/stats/funnel?application=Game&steps=a", "steps"},
		{"/v1.0/stats/funnel?application=Game&steps=a,b,c,d,e,f,g,h,i", "steps"},
		{"/v1.0/stats/funnel?application=Game", "steps"},
		{"/v1.0/stats/value?application=Game&field=score", "event_type"},
		{"/v1.0/stats/value?application=Game&event_type=x", "field"},
		{"/v1.0/stats/value?application=Game&event_type=x&field=" + url.QueryEscape(`a') OR 1=1 --`), "field"},
		{"/v1.0/stats/series?application=Game&by=user_id", "by"},
		{"/v1.0/stats?application=Game&series=event_type,user_id", "series"},
		{"/v1.0/stats/recent?limit=0", "limit"},
		{"/v1.0/stats/recent?limit=100000", "limit"},
		{"/v1.0/stats/recent?limit=-5", "limit"},
	} {
		code, _, body := get(t, base+tc.path, adminKey)
		want := `{"detail":[{"loc":["query","` + tc.param + `"],`
		if code != 422 || !strings.HasPrefix(body, want) || !strings.Contains(body, `"type":"value_error"`) {
			t.Errorf("GET %s: %d %s; want 422 naming %s", tc.path, code, body, tc.param)
		}
	}
	// 400 days is the most.
	if code, _, body := get(t, base+"/v1.0/stats?application=Game&since=2025-10-07&until=2026-11-10", adminKey); code != 200 {
		t.Errorf("400 days: %d %s", code, body)
	}
}

// TestPage_Headers: the page and its assets are served without a key (they
// hold no data), with a strict CSP, nosniff and no referrer.
func TestPage_Headers(t *testing.T) {
	base := startDashboard(t, querytest.Known(t))
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/dashboard", "text/html; charset=utf-8", "Admin key needed"},
		{"/dashboard/app.js", "text/javascript; charset=utf-8", "textContent"},
		{"/dashboard/app.css", "text/css; charset=utf-8", ".tile"},
		{"/dashboard/uPlot.iife.min.js", "text/javascript; charset=utf-8", "uPlot (v1.6.32)"},
		{"/dashboard/uPlot.min.css", "text/css; charset=utf-8", ".uplot"},
	} {
		code, hdr, body := get(t, base+tc.path, "")
		if code != 200 || hdr.Get("Content-Type") != tc.ctype || !strings.Contains(body, tc.contains) {
			t.Errorf("GET %s: %d %q, body has %q: %v", tc.path, code, hdr.Get("Content-Type"), tc.contains, strings.Contains(body, tc.contains))
		}
		csp := hdr.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: CSP %q", tc.path, csp)
		}
		// No foreign origin anywhere: every source is 'none', 'self' or
		// (images only) data:.
		for _, d := range strings.Split(csp, ";") {
			f := strings.Fields(d)
			for _, src := range f[1:] {
				if src != "'none'" && src != "'self'" && (src != "data:" || f[0] != "img-src") {
					t.Errorf("GET %s: CSP %s allows %s", tc.path, f[0], src)
				}
			}
		}
		if hdr.Get("X-Content-Type-Options") != "nosniff" || hdr.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: headers %v", tc.path, hdr)
		}
	}
	// What the CSP enforces, kept in the source too: the page has no inline
	// script or handler, and its script writes no HTML.
	_, _, page := get(t, base+"/dashboard", "")
	scripts := regexp.MustCompile(`<script[^>]*>[^<]*</script>`).FindAllString(page, -1)
	if len(scripts) != strings.Count(page, "<script") || len(scripts) != 2 {
		t.Errorf("%d script elements of %d, want 2", len(scripts), strings.Count(page, "<script"))
	}
	for _, sc := range scripts {
		if !regexp.MustCompile(`^<script src="/dashboard/[A-Za-z.]+\.js" defer></script>$`).MatchString(sc) {
			t.Errorf("the page holds inline code: %s", sc)
		}
	}
	if m := regexp.MustCompile(`\son[a-z]+=`).FindString(page); m != "" {
		t.Errorf("the page holds an inline handler: %q", m)
	}
	_, _, js := get(t, base+"/dashboard/app.js", "")
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute(\"on"} {
		if strings.Contains(js, sink) {
			t.Errorf("app.js uses %s", sink)
		}
	}
	for _, p := range []string{"/dashboard/uPlot.LICENSE", "/dashboard/nothing.js", "/dashboard/index.html", "/dashboard/..%2fstats.go"} {
		if code, _, _ := get(t, base+p, ""); code != 404 {
			t.Errorf("GET %s: %d, want 404", p, code)
		}
	}
	if _, hdr, _ := get(t, base+"/v1.0/stats?"+novemberQuery, adminKey); hdr.Get("Cache-Control") != "no-store" || hdr.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("stats headers: %v", hdr)
	}
}
