package ingest_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/ingest/internal/chromium"
)

// browserPage posts two events to the gocolytics at %[1]s: a "simple"
// request as a Godot web export sends it (no preflight), and one whose
// Content-Type needs a preflight. It writes what the script saw into the
// page, where --dump-dom prints it.
const browserPage = `<!DOCTYPE html>
<html><body><pre id="simple">pending</pre><pre id="preflight">pending</pre>
<script>
const ev = (type) => JSON.stringify({event_type: type, application: "Web Game", version: "1",
  platform: "Web", user_id: "u", session_id: "s", value: {hp: 3}, api_key: %[2]q});
async function post(id, headers) {
  const out = document.getElementById(id);
  try {
    const r = await fetch(%[1]q, {method: "POST", headers: headers, body: ev(id + "-" + %[3]q)});
    out.textContent = "status " + r.status;
  } catch (e) {
    out.textContent = "failed " + e.name + ": " + e.message;
  }
}
(async () => {
  await post("simple", {});
  await post("preflight", {"Content-Type": "application/json"});
})();
</script></body></html>
`

func chromiumPath(t *testing.T) string {
	return chromium.Path(t, "the browser CORS test")
}

// runBrowser loads url in headless Chromium and returns the DOM once the
// page's scripts have run.
func runBrowser(t *testing.T, path, url string) string {
	t.Helper()
	dom, _ := chromium.Run(t, path, url, 10*time.Second, "--dump-dom")
	return dom
}

var outcome = regexp.MustCompile(`<pre id="(\w+)">([^<]*)</pre>`)

// TestCORS_Browser posts from pages in a real browser: from an allowed
// origin the script sees 204 and the rows are stored; from another origin
// the browser refuses the script the answer.
func TestCORS_Browser(t *testing.T) {
	browser := chromiumPath(t)
	// The page origins exist before the server, which allows only one.
	allowedPage := servePageLater(t)
	otherPage := servePageLater(t)
	s := startServer(t, ingest.Config{CORSOrigins: []string{allowedPage.URL}})
	allowedPage.set(s.URL+"/v1.0/event", "allowed")
	otherPage.set(s.URL+"/v1.0/event", "other")

	// The two pages load in two Chromiums at once (a start costs seconds,
	// mostly waiting); the group returns when both have.
	t.Run("pages", func(t *testing.T) {
		for _, tc := range []struct {
			name          string
			page          *lateServer
			wantSimple    string
			wantPreflight string
		}{
			{"allowed", allowedPage, "status 204", "status 204"},
			{"other", otherPage, "failed TypeError: Failed to fetch", "failed TypeError: Failed to fetch"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				dom := runBrowser(t, browser, tc.page.URL)
				got := map[string]string{}
				for _, m := range outcome.FindAllStringSubmatch(dom, -1) {
					got[m[1]] = m[2]
				}
				if got["simple"] != tc.wantSimple || got["preflight"] != tc.wantPreflight {
					t.Errorf("page %s saw simple %q, preflight %q; want %q, %q\nDOM:\n%s",
						tc.page.URL, got["simple"], got["preflight"], tc.wantSimple, tc.wantPreflight, dom)
				}
			})
		}
	})

	stored := map[string]int{}
	for _, r := range s.rows(t) {
		stored[r.EventType]++
		if r.Value != `{"hp":3}` {
			t.Errorf("row %s: value %s", r.EventType, r.Value)
		}
	}
	// A simple request reaches the server whatever the origin (the
	// browser only hides the answer); a refused preflight stops the post.
	want := map[string]int{"simple-allowed": 1, "preflight-allowed": 1, "simple-other": 1}
	if fmt.Sprint(stored) != fmt.Sprint(want) {
		t.Errorf("stored %v, want %v", stored, want)
	}
}

// lateServer is a page server whose page is set once the gocolytics it
// posts to has started.
type lateServer struct {
	*httptest.Server
	page atomic.Pointer[string]
}

func servePageLater(t *testing.T) *lateServer {
	t.Helper()
	ls := &lateServer{}
	ls.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := ls.page.Load()
		if r.URL.Path != "/" || p == nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, *p)
	}))
	t.Cleanup(ls.Close)
	return ls
}

func (ls *lateServer) set(target, tag string) {
	p := fmt.Sprintf(browserPage, target, testKey, tag)
	ls.page.Store(&p)
}
