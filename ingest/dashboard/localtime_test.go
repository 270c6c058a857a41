package dashboard_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/ingest/dashboard"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
)

// kiritimati is a server clock with LOCAL_TIME in UTC+14: noon UTC on
// November 10 is already November 11 there, so the server's today is the
// 11th while UTC's (and most browsers') is the 10th.
var kiritimati = november10.In(time.FixedZone("UTC+14", 14*3600))

// startLocalTime serves the known dataset as a LOCAL_TIME server at
// kiritimati.
func startLocalTime(tb testing.TB) string {
	tb.Helper()
	return serveDashboard(tb, dashboard.Config{
		Source:    querytest.OpenReader(tb, querytest.Known(tb)),
		Guard:     keyGuard{ingest.NewKeys([]string{adminKey})},
		LocalTime: true,
		Now:       func() time.Time { return kiritimati },
	})
}

// daysOf returns the first and last day of a stats answer's days.
func daysOf(tb testing.TB, body string) string {
	tb.Helper()
	m := regexp.MustCompile(`"day":"([0-9-]+)"`).FindAllStringSubmatch(body, -1)
	if m == nil {
		tb.Fatalf("no days in %s", body)
	}
	return m[0][1] + " to " + m[len(m)-1][1]
}

// TestStatsAPI_Days: days=N is the N days ending with until, by default the
// server's today (the local day with LOCAL_TIME); it cannot go with since.
func TestStatsAPI_Days(t *testing.T) {
	t.Parallel()
	base := startLocalTime(t)
	for _, tc := range []struct{ query, want string }{
		{"days=7", "2026-11-05 to 2026-11-11"},
		{"days=1", "2026-11-11 to 2026-11-11"},
		{"days=3&until=2026-11-09", "2026-11-07 to 2026-11-09"},
		{"", "2026-10-13 to 2026-11-11"},
	} {
		code, _, body := get(t, base+"/v1.0/stats?application=Game&"+tc.query, adminKey)
		if code != 200 {
			t.Fatalf("%s: %d %s", tc.query, code, body)
		}
		if got := daysOf(t, body); got != tc.want {
			t.Errorf("%s: days %s, want %s", tc.query, got, tc.want)
		}
	}
	// The funnel and the value statistics take it too.
	code, _, body := get(t, base+"/v1.0/stats/value?application=Game&event_type=level_end&field=score&days=2", adminKey)
	if code != 200 || daysOf(t, body) != "2026-11-10 to 2026-11-11" {
		t.Errorf("value with days=2: %d %s", code, body)
	}
	code, _, body = get(t, base+"/v1.0/stats/funnel?application=Game&steps=start,level_end&days=2", adminKey)
	if code != 200 || !strings.Contains(body, `"step":"start"`) {
		t.Errorf("funnel with days=2: %d %s", code, body)
	}
	for _, q := range []string{"days=0", "days=401", "days=x", "days=7&since=2026-11-01"} {
		code, _, body := get(t, base+"/v1.0/stats?application=Game&"+q, adminKey)
		if code != 422 || !strings.Contains(body, `["query","days"]`) {
			t.Errorf("%s: %d %s, want 422 naming days", q, code, body)
		}
	}
}

// TestDashboard_BrowserLocalTimePresets: the 7-day picker of a LOCAL_TIME
// server shows the server's last 7 days (up to its today, the 11th), not
// the browser's.
func TestDashboard_BrowserLocalTimePresets(t *testing.T) {
	t.Parallel()
	browser := chromiumPath(t)
	base := startLocalTime(t)
	dom, console := browse(t, browser, base+"/dashboard?application=Game&days=7&live=0#key="+adminKey, "--dump-dom")
	if len(console) > 0 {
		t.Errorf("console messages:\n%s", strings.Join(console, "\n"))
	}
	if !strings.Contains(dom, `data-loaded="true"`) {
		t.Fatalf("the page did not load the statistics:\n%s", dom)
	}
	if got := text(t, dom, "status"); !strings.HasPrefix(got, "Game, 2026-11-05 to 2026-11-11 ") {
		t.Errorf("status %q, want the range 2026-11-05 to 2026-11-11", got)
	}
	var cohorts []string
	for _, m := range regexp.MustCompile(`<tr data-cohort="([^"]+)">`).FindAllStringSubmatch(dom, -1) {
		cohorts = append(cohorts, m[1])
	}
	if got, want := strings.Join(cohorts, " "), "2026-11-11 2026-11-10 2026-11-09 2026-11-08 2026-11-07 2026-11-06 2026-11-05"; got != want {
		t.Errorf("retention cohorts %s, want %s", got, want)
	}
	// The charts are drawn: the page asks for the figures before the chart
	// library has run, and waits for it to draw them.
	if n := strings.Count(dom, `class="uplot`); n != 3 {
		t.Errorf("%d charts drawn, want 3 (users, event types, versions)", n)
	}
	// DAU is the users of the server's today, the 11th: nobody yet.
	if got := text(t, dom, "tile-dau"); got != "0" {
		t.Errorf("DAU %q, want 0", got)
	}
}
