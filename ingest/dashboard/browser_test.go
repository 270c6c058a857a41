package dashboard_test

import (
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
)

func chromiumPath(t *testing.T) string {
	return chromium.Path(t, "the dashboard browser tests")
}

// browse loads url in a fresh headless Chromium with extra flags and
// returns its output and the page's console messages.
func browse(t *testing.T, path, url string, extra ...string) (string, []string) {
	t.Helper()
	return chromium.Run(t, path, url, 15*time.Second, extra...)
}

// text returns the text of the element with the given id in dom.
func text(t *testing.T, dom, id string) string {
	t.Helper()
	m := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*>([^<]*)<`).FindStringSubmatch(dom)
	if m == nil {
		t.Errorf("no element %s in the page", id)
		return ""
	}
	return m[1]
}

// TestDashboard_BrowserNoKey: without a key, the page asks for one and
// shows no figures.
func TestDashboard_BrowserNoKey(t *testing.T) {
	t.Parallel()
	browser := chromiumPath(t)
	base := startDashboard(t, querytest.Known(t))
	dom, console := browse(t, browser, base+"/dashboard?application=Game", "--dump-dom")
	if len(console) > 0 {
		t.Errorf("console messages without a key:\n%s", strings.Join(console, "\n"))
	}
	if !regexp.MustCompile(`<section id="need-key">`).MatchString(dom) || !regexp.MustCompile(`<main id="data" hidden`).MatchString(dom) {
		t.Errorf("without a key the page does not ask for one:\n%s", dom)
	}
	if v := text(t, dom, "tile-dau"); v != "–" {
		t.Errorf("without a key DAU shows %q", v)
	}
	if os.Getenv("GOCOLYTICS_CI") != "" {
		// A wrong key: refused, the prompt again.
		dom, _ = browse(t, browser, base+"/dashboard#key=wrong", "--dump-dom")
		if !strings.Contains(dom, `<section id="need-key">`) || !strings.Contains(dom, "refused") {
			t.Errorf("with a wrong key the page does not ask for one:\n%s", dom)
		}
	}
}

// hostile are strings a game client can send to attack the dashboard.
var hostile = []string{
	`<img src=x onerror="document.title='XSS-img'">`,
	`<script>document.title='XSS-script'</script>`,
	`javascript:document.title='XSS-url'`,
	`"><svg onload="document.title='XSS-svg'">`,
	`</td></tr><tr><td><iframe src="javascript:parent.document.title='XSS-frame'">`,
}

// TestDashboard_BrowserHostile shows events whose every string is an
// attack, then uses the funnel builder and the value chart over them: in
// Chromium nothing of them runs, no element of theirs appears, and the
// strings are shown as text.
func TestDashboard_BrowserHostile(t *testing.T) {
	t.Parallel()
	browser := chromiumPath(t)
	base := startDashboard(t, hostileDB(t))
	p := chromium.Open(t, browser, 1280, 900)
	p.Navigate(base + "/dashboard?since=2026-11-01&until=2026-11-10&live=0#key=" + adminKey)
	p.WaitFor(`document.body.dataset.loaded === "true"`, 30*time.Second)
	var dom string
	p.Eval("document.documentElement.outerHTML", &dom)
	if strings.Contains(dom, "XSS-") && strings.Contains(dom, "<title>XSS") {
		t.Errorf("an attack ran: %s", dom[:200])
	}
	if m := regexp.MustCompile(`<title>([^<]*)</title>`).FindStringSubmatch(dom); m == nil || m[1] != "gocolytics dashboard" {
		t.Errorf("title %v", m)
	}
	for _, tag := range []string{"<img", "<svg", "<iframe", `href="javascript`} {
		if strings.Contains(dom, tag) {
			t.Errorf("the page holds an element %s from event data", tag)
		}
	}
	if n := strings.Count(dom, "<script"); n != 2 {
		t.Errorf("%d script elements, want the page's 2", n)
	}
	// The strings are there, as text.
	for _, want := range []string{`&lt;img src=x onerror="document.title='XSS-img'"&gt;`, `&lt;script&gt;document.title='XSS-script'&lt;/script&gt;`,
		`javascript:document.title='XSS-url'`} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page does not show %s as text", want)
		}
	}

	// The funnel builder and the value chart over hostile event types
	// (they show only after a click).
	steps, _ := json.Marshal(hostile[:3])
	p.Eval(`(() => {
		document.getElementById("funnel-add").click();
		const steps = `+string(steps)+`;
		document.querySelectorAll("#funnel-steps select").forEach((s, i) => { s.value = steps[i]; });
		document.querySelector("#funnel-form button[type=submit]").click();
		document.getElementById("value-type").value = steps[1];
		document.getElementById("value-field").value = "score";
		document.querySelector("#value-form button[type=submit]").click();
	})()`, nil)
	p.WaitFor(`document.querySelectorAll("#funnel .row").length === 3 && document.getElementById("value-note").textContent !== ""`, 10*time.Second)
	var got struct {
		Title, Note string
		Funnel      []string
		Elements    int
	}
	p.Eval(`({title: document.title, note: document.getElementById("value-note").textContent,
		funnel: [...document.querySelectorAll("#funnel .row .name")].map((e) => e.textContent),
		elements: document.querySelectorAll("img, svg, iframe, main script, a[href^=javascript]").length})`, &got)
	want := []string{"1. " + hostile[0], "2. " + hostile[1], "3. " + hostile[2]}
	if got.Title != "gocolytics dashboard" || got.Elements != 0 || strings.Join(got.Funnel, "|") != strings.Join(want, "|") ||
		got.Note != "0 numbers, 3 events without a number skipped" {
		t.Errorf("got %+v; want the title unchanged, no element from event data, funnel steps %q, 3 skipped", got, want)
	}
	if c := p.Console(); len(c) > 0 {
		t.Errorf("console messages:\n%s", strings.Join(c, "\n"))
	}
}

// hostileDB writes a database whose every string is one of hostile, in
// the application hostile[0], and returns its path.
func hostileDB(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "hostile.db")
	var events []shard.Event
	day := time.Date(2026, 11, 9, 10, 0, 0, 0, time.UTC)
	for i, h := range hostile {
		for j := range 3 {
			events = append(events, shard.Event{Time: day.Add(time.Duration(i*3+j) * time.Hour / 2), Application: hostile[0],
				EventType: h, Version: h, Platform: h, UserID: h + string(rune('a'+j)), SessionID: h,
				Value: `{"score":` + jsonString(h) + `,` + jsonString(h) + `:1}`})
		}
	}
	querytest.Write(t, path, events)
	return path
}

func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}
