package dashboard_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/ingest/internal/chromium"
	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

// TestDashboard_Browser loads the page in Chromium with the key in the
// fragment, on the known dataset: the tiles and the retention grid show
// its figures, and a screenshot is saved. Then it uses the page as a
// developer does: the key is kept in the browser's storage (and leaves the
// address), the charts, platform bars, pickers and latest events show the
// dataset, the funnel builder and the value chart answer its figures, two
// pickers changed at once both apply, a phone-wide window needs no
// sideways scrolling (a second screenshot), the stored key serves a visit
// without the fragment, and "Forget key" brings the prompt back. Nothing
// is logged to the console. (One Chromium for all: each start costs
// seconds.)
func TestDashboard_Browser(t *testing.T) {
	t.Parallel()
	browser := chromiumPath(t)
	path := querytest.Known(t)
	base := startDashboard(t, path)
	page := base + "/dashboard?application=Game&since=2026-11-01&until=2026-11-10&live=0"
	p := chromium.Open(t, browser, 1280, 900)
	p.Navigate(page + "#key=" + adminKey)
	loaded := `document.body.dataset.loaded === "true"`
	p.WaitFor(loaded, 30*time.Second)

	var dom string
	p.Eval("document.documentElement.outerHTML", &dom)
	for id, want := range map[string]string{"tile-dau": "1", "tile-wau": "4", "tile-mau": "7", "tile-new": "5",
		"tile-sessions": "10", "tile-median": "59.5 s"} {
		if got := text(t, dom, id); got != want {
			t.Errorf("%s shows %q, want %q", id, got, want)
		}
	}
	// Retention rows, newest cohort first: cohort, users, d1, d7, d30.
	row := regexp.MustCompile(`<tr data-cohort="([^"]+)"><td>[^<]*</td><td class="num">(\d+)</td>` +
		`<td class="cell" data-col="d1"[^>]*>([^<]*)</td><td class="cell" data-col="d7"[^>]*>([^<]*)</td><td class="cell" data-col="d30"[^>]*>([^<]*)</td></tr>`)
	got := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(dom, -1) {
		got[m[1]] = strings.Join(m[2:], " | ")
	}
	for cohort, want := range map[string]string{
		"2026-11-01": "2 | 1 (50%) | 2 (100%) | –",
		"2026-11-02": "1 | 1 (100%) | 0 (0%) | –",
		"2026-11-03": "1 | 0 (0%) | 0 (0%) | –",
		"2026-11-04": "0 | 0 | – | –",
		"2026-11-10": "1 | – | – | –",
	} {
		if got[cohort] != want {
			t.Errorf("retention row %s shows %q, want %q", cohort, got[cohort], want)
		}
	}
	if len(got) != 10 {
		t.Errorf("%d retention rows, want 10", len(got))
	}
	if strings.Contains(dom, adminKey) {
		t.Error("the key is in the page")
	}
	shot := filepath.Join(os.TempDir(), "gocolytics-dashboard.png")
	saveScreenshot(t, p, shot)

	eval := func(what, expression string, want string) {
		t.Helper()
		var got any
		p.Eval(expression, &got)
		b, err := json.Marshal(got) // as JSON: EqualJSON reads a string as JSON text
		if err != nil {
			t.Fatal(err)
		}
		querytest.EqualJSON(t, what, b, want)
	}
	eval("the retention grid's shading", `["d1", "d7", "d30"].map((k) => document.querySelector('tr[data-cohort="2026-11-01"] td[data-col="' + k + '"]').style.backgroundColor)`,
		`["rgba(37, 99, 235, 0.38)", "rgba(37, 99, 235, 0.68)", ""]`)
	eval("the key's place", `[localStorage.getItem("gocolytics.adminKey"), location.hash, location.href.includes("key")]`,
		`["`+adminKey+`", "", false]`)
	legend := `(id) => [...document.querySelectorAll("#" + id + " .u-legend .u-label")].map((e) => e.textContent)`
	eval("the users chart", `(`+legend+`)("chart-users")`, `["Day", "Users", "New users"]`)
	eval("the event types chart", `(`+legend+`)("chart-types").sort()`, `["Day", "level_1", "level_end", "start", "tutorial_end", "tutorial_start"]`)
	eval("the versions chart", `(`+legend+`)("chart-versions").sort()`, `["1.0", "1.1", "Day"]`)
	eval("charts drawn", `["chart-users", "chart-types", "chart-versions"].map((id) => document.querySelector("#" + id + " canvas").width > 200)`,
		`[true, true, true]`)
	eval("the platform bars", `[...document.querySelectorAll("#platforms .row")].map((r) => [r.querySelector(".name").textContent, r.querySelector(".count").textContent])`,
		`[["Linux", "3 users"], ["Android", "2 users"], ["Windows", "1 users"]]`)
	options := `(id) => [...document.getElementById(id).options].map((o) => o.value)`
	eval("the pickers", `["application", "range", "version", "platform"].map(`+options+`)`,
		`[["Game", "Other"], ["7", "30", "90", "custom"], ["", "1.0", "1.1"], ["", "Linux", "Android", "Windows"]]`)
	eval("the latest events", `[document.querySelectorAll("#recent tbody tr").length,
		[...document.querySelector("#recent tbody tr").cells].map((c) => c.textContent)]`,
		`[25, ["2026-11-10 23:59:59", "level_end", "u4", "1.1", "Android", "{\"score\":40.5}"]]`)

	// The funnel builder: a third step, the known drop-off; at most 8 steps.
	p.Eval(`(() => {
		document.getElementById("funnel-add").click();
		const steps = ["tutorial_start", "tutorial_end", "level_1"];
		document.querySelectorAll("#funnel-steps select").forEach((s, i) => { s.value = steps[i]; });
		document.querySelector("#funnel-form button[type=submit]").click();
	})()`, nil)
	p.WaitFor(`document.querySelectorAll("#funnel .row").length > 0`, 10*time.Second)
	eval("the funnel", `[...document.querySelectorAll("#funnel .row")].map((r) => [r.querySelector(".name").textContent, r.querySelector(".count").textContent])`,
		`[["1. tutorial_start", "4 (100%)"], ["2. tutorial_end", "3 (75%)"], ["3. level_1", "2 (50%)"]]`)
	eval("8 steps at most", `(() => {
		for (let i = 0; i < 10; i++) document.getElementById("funnel-add").click();
		return document.querySelectorAll("#funnel-steps select").length;
	})()`, `8`)

	// The value chart of a nested field, with what it skipped.
	p.Eval(`(() => {
		document.getElementById("value-type").value = "level_end";
		document.getElementById("value-field").value = "stats.time";
		document.querySelector("#value-form button[type=submit]").click();
	})()`, nil)
	p.WaitFor(`document.getElementById("value-note").textContent !== ""`, 10*time.Second)
	eval("the value note", `document.getElementById("value-note").textContent`, `"2 numbers, 4 events without a number skipped"`)
	eval("the value chart", `(`+legend+`)("chart-value")`, `["Day", "avg", "p50", "p95", "min", "max"]`)

	// Two pickers changed at once (the second while the first one's
	// figures are on their way): the figures are those of both, Linux
	// over the server's last 7 days (November 4th to 10th).
	p.Eval(`(() => {
		const set = (id, v) => { const s = document.getElementById(id); s.value = v; s.dispatchEvent(new Event("change")); };
		set("platform", "Linux");
		set("range", "7");
	})()`, nil)
	p.WaitFor(`document.getElementById("status").textContent.startsWith("Game, 2026-11-04 to 2026-11-10 ")`, 10*time.Second)
	tiles := `["dau", "wau", "mau", "new", "sessions", "median"].map((k) => document.getElementById("tile-" + k).textContent)`
	eval("Linux, 7 days", tiles, `["0", "1", "4", "0", "1", "30 s"]`)
	// The funnel and the value chart, of the old pickers, went; their steps
	// and field stay.
	eval("funnel and value after the pickers changed", `[document.querySelectorAll("#funnel .row, #chart-value canvas").length,
		document.getElementById("value-note").textContent, document.getElementById("funnel-steps").children.length,
		document.getElementById("value-field").value]`, `[0, "", 8, "stats.time"]`)
	// The application picker: Other, all platforms (u1 on the 4th).
	p.Eval(`(() => {
		const set = (id, v) => { const s = document.getElementById(id); s.value = v; s.dispatchEvent(new Event("change")); };
		set("application", "Other");
		set("platform", "");
	})()`, nil)
	// (The first change's figures, Other on Linux, all zero, come first.)
	p.WaitFor(`document.getElementById("status").textContent.startsWith("Other, ") && document.getElementById("tile-mau").textContent !== "0"`, 10*time.Second)
	eval("Other, 7 days", `[`+tiles+`, document.getElementById("status").textContent.slice(0, 32)]`,
		`[["0", "1", "1", "0", "1", "0 s"], "Other, 2026-11-04 to 2026-11-10 "]`)

	// A phone: no sideways scrolling, nothing wider than the screen, the
	// small screen's type.
	p.Call("Emulation.setDeviceMetricsOverride", map[string]any{"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true}, nil)
	p.WaitFor(`innerWidth === 390 && document.querySelector("#chart-users canvas").getBoundingClientRect().right <= 390`, 10*time.Second)
	eval("on a phone", `[document.documentElement.scrollWidth <= innerWidth,
		[...document.querySelectorAll("header, .tile, .card, #pickers label")].every((e) => e.getBoundingClientRect().right <= innerWidth),
		getComputedStyle(document.body).fontSize]`, `[true, true, "14px"]`)
	saveScreenshot(t, p, filepath.Join(os.TempDir(), "gocolytics-dashboard-phone.png"))

	// A later visit without the fragment: the stored key.
	p.Call("Emulation.clearDeviceMetricsOverride", nil, nil)
	p.Navigate(page)
	p.WaitFor(loaded, 30*time.Second)
	eval("a visit with the stored key", tiles, `["1", "4", "7", "5", "10", "59.5 s"]`)

	// Live: with "Refresh every 10 s" on, an event stored while the page is
	// open shows in the latest events and the figures within a refresh.
	p.Navigate(strings.TrimSuffix(page, "&live=0"))
	p.WaitFor(loaded, 30*time.Second)
	w := shardtest.Open(t, path, shard.Options{})
	if err := w.Write(0, []shard.Event{{Time: time.Date(2026, 11, 10, 20, 0, 0, 0, time.UTC), Application: "Game", UserID: "live",
		SessionID: "live", EventType: "start", Version: "1.1", Platform: "Web", Value: "{}"}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Merge(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.WaitFor(`document.querySelector("#recent tbody tr").cells[2].textContent === "live" && document.getElementById("tile-dau").textContent === "2"`, 25*time.Second)

	// Forget key: the prompt, no figures, nothing stored.
	p.Eval(`document.getElementById("forget").click()`, nil)
	eval("after Forget key", `[document.getElementById("need-key").hidden, document.getElementById("data").hidden, localStorage.getItem("gocolytics.adminKey")]`,
		`[false, true, null]`)

	if c := p.Console(); len(c) > 0 {
		t.Errorf("console messages:\n%s", strings.Join(c, "\n"))
	}
}

// saveScreenshot saves the page as a PNG file at path, and checks it is one
// with something drawn.
func saveScreenshot(t *testing.T, p *chromium.Page, path string) {
	t.Helper()
	os.Remove(path)
	p.Screenshot(path)
	if fi, err := os.Stat(path); err != nil || fi.Size() < 10000 {
		t.Errorf("screenshot %s: %v", path, err)
	} else {
		t.Logf("screenshot: %s", path)
	}
}
