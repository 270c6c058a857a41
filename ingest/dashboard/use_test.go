package dashboard_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/ingest/internal/chromium"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
)

// TestDashboard_BrowserUse uses the page in Chromium as a developer does,
// on the known dataset: the key from the fragment is kept in the browser's
// storage (and leaves the address), the charts, platform bars, pickers and
// latest events show the dataset, the funnel builder and the value chart
// answer its figures, two pickers changed at once both apply, a phone-wide
// window needs no sideways scrolling, the stored key serves a visit
// without the fragment, and "Forget key" brings the prompt back. Nothing
// is logged to the console.
func TestDashboard_BrowserUse(t *testing.T) {
	t.Parallel()
	browser := chromiumPath(t)
	base := startDashboard(t, querytest.Known(t))
	page := base + "/dashboard?application=Game&since=2026-11-01&until=2026-11-10&live=0"
	p := chromium.Open(t, browser, 1280, 900)
	p.Navigate(page + "#key=" + adminKey)
	loaded := `document.body.dataset.loaded === "true"`
	p.WaitFor(loaded, 30*time.Second)

	eval := func(what, expression string, want string) {
		t.Helper()
		var got any
		p.Eval(expression, &got)
		querytest.EqualJSON(t, what, mustMarshal(t, got), want)
	}
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

	// A phone: no sideways scrolling, nothing wider than the screen, the
	// small screen's type.
	p.Call("Emulation.setDeviceMetricsOverride", map[string]any{"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true}, nil)
	p.WaitFor(`innerWidth === 390 && document.querySelector("#chart-users canvas").getBoundingClientRect().right <= 390`, 10*time.Second)
	eval("on a phone", `[document.documentElement.scrollWidth <= innerWidth,
		[...document.querySelectorAll("header, .tile, .card, #pickers label")].every((e) => e.getBoundingClientRect().right <= innerWidth),
		getComputedStyle(document.body).fontSize]`, `[true, true, "14px"]`)
	shot := filepath.Join(os.TempDir(), "gocolytics-dashboard-phone.png")
	p.Screenshot(shot)
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10000 {
		t.Errorf("phone screenshot %s: %v", shot, err)
	} else {
		t.Logf("phone screenshot: %s", shot)
	}

	// A later visit without the fragment: the stored key.
	p.Call("Emulation.clearDeviceMetricsOverride", nil, nil)
	p.Navigate(page)
	p.WaitFor(loaded, 30*time.Second)
	eval("a visit with the stored key", tiles, `["1", "4", "7", "5", "10", "59.5 s"]`)

	// Forget key: the prompt, no figures, nothing stored.
	p.Eval(`document.getElementById("forget").click()`, nil)
	eval("after Forget key", `[document.getElementById("need-key").hidden, document.getElementById("data").hidden, localStorage.getItem("gocolytics.adminKey")]`,
		`[false, true, null]`)

	if c := p.Console(); len(c) > 0 {
		t.Errorf("console messages:\n%s", strings.Join(c, "\n"))
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
