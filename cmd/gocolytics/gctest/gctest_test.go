package gctest_test

import (
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
)

// TestNewEvent_Spread: markers spread over thousands of players and
// sessions and every type, version and platform, in the Godot plugin's id
// formats, the same event for the same marker.
func TestNewEvent_Spread(t *testing.T) {
	users, sessions := map[string]bool{}, map[string]bool{}
	types, versions, platforms := map[string]bool{}, map[string]bool{}, map[string]bool{}
	hex8, hex64 := regexp.MustCompile(`^[0-9a-f]{8}$`), regexp.MustCompile(`^[0-9a-f]{64}$`)
	for i := range 10000 {
		e := gctest.NewEvent(fmt.Sprintf("m-%d", i))
		if !hex8.MatchString(e.UserID) || !hex64.MatchString(e.SessionID) {
			t.Fatalf("ids %q %q, want 8 and 64 hex digits", e.UserID, e.SessionID)
		}
		users[e.UserID], sessions[e.SessionID] = true, true
		types[e.EventType], versions[e.Version], platforms[e.Platform] = true, true, true
	}
	// 10,000 events over 5,000 players with 4 sessions each: some 4,300
	// players and 7,900 sessions.
	if len(users) < 4000 || len(sessions) < 7000 || len(types) != 6 || len(versions) != 3 || len(platforms) != 6 {
		t.Errorf("got %d players, %d sessions, %d types, %d versions, %d platforms; want over 4,000, over 7,000, 6, 3, 6",
			len(users), len(sessions), len(types), len(versions), len(platforms))
	}
	if a, b := gctest.NewEvent("same").JSON(), gctest.NewEvent("same").JSON(); a != b {
		t.Errorf("two events for one marker differ:\n%s\n%s", a, b)
	}
	want := `{"event_type":"x","application":"a","version":"1","platform":"p","user_id":"u","session_id":"s","api_key":"k"}`
	if got := (gctest.Event{EventType: "x", Application: "a", Version: "1", Platform: "p", UserID: "u", SessionID: "s", APIKey: "k"}).JSON(); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// recorder is a testing.TB that keeps the errors a helper reports.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// writeRows stores events as the server would, with the server's columns.
func writeRows(t *testing.T, path string, events ...gctest.Event) {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS event (id INTEGER PRIMARY KEY, event_type, application, version, platform, user_id, session_id, value, time)`); err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if _, err := db.Exec(`INSERT INTO event (event_type, application, version, platform, user_id, session_id, value, time) VALUES (?, ?, ?, ?, ?, ?, ?, '')`,
			e.EventType, e.Application, e.Version, e.Platform, e.UserID, e.SessionID, e.Value); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStored_Checks: Stored returns the markers of rows that hold what was
// sent, and reports a row that differs, a row without a marker and a
// marker stored twice.
func TestStored_Checks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	tampered := gctest.NewEvent("b")
	tampered.Platform += "x"
	unmarked := gctest.NewEvent("c")
	unmarked.Value = "{}"
	writeRows(t, path, gctest.NewEvent("a"), tampered, unmarked, gctest.NewEvent("d"), gctest.NewEvent("d"))
	r := &recorder{TB: t}
	stored := gctest.Stored(r, path)
	if len(stored) != 2 || !stored["a"] || !stored["d"] {
		t.Errorf("got markers %v, want a and d", stored)
	}
	all := strings.Join(r.errs, "\n")
	if len(r.errs) != 3 || !strings.Contains(all, `marker "b"`) || !strings.Contains(all, `marker ""`) || !strings.Contains(all, "d stored twice") {
		t.Errorf("got errors:\n%s\nwant the tampered row, the unmarked row and d twice", all)
	}
}

// TestLedger_CheckStored: a load's ledger counts what the server answered,
// and CheckStored reports an acknowledged event the database lacks.
func TestLedger_CheckStored(t *testing.T) {
	// Single events are acknowledged, batches refused.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1.0/events" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	l := gctest.Load{Addr: addr, Prefix: "t", Clients: 2, Requests: 6, Batches: true, Allowed: func(c int) bool { return c == 503 }}.Start()
	l.Wait()
	// Per client: requests 0, 1, 3, 4 are single events; 2 and 5 batches.
	if l.Count(204) != 8 || l.Count(503) != 4 || l.AckedCount() != 8 || len(l.Bad()) != 0 || l.Unknown() != 0 {
		t.Fatalf("got %v, %d acknowledged, bad %v, %d unanswered; want 8 × 204 and 4 × 503", l.Statuses(), l.AckedCount(), l.Bad(), l.Unknown())
	}
	path := filepath.Join(t.TempDir(), "events.db")
	writeRows(t, path, gctest.NewEvent("t-c0-0-0"), gctest.NewEvent("t-c0-1-0"), gctest.NewEvent("t-c0-3-0"), gctest.NewEvent("t-c0-4-0"),
		gctest.NewEvent("t-c1-0-0"), gctest.NewEvent("t-c1-1-0"), gctest.NewEvent("t-c1-3-0"))
	r := &recorder{TB: t}
	l.CheckStored(r, path)
	if len(r.errs) != 1 || !strings.Contains(r.errs[0], "1 acknowledged events lost") || !strings.Contains(r.errs[0], "t-c1-4-0") {
		t.Errorf("got errors %q, want t-c1-4-0 lost", r.errs)
	}
}

// TestMemoryCgroup_Enforced: the limit of a MemoryCgroup is enforced on
// this machine: a process that holds 96 MiB in a 32 MiB cgroup is killed
// and counted, one that holds 1 MiB is not.
func TestMemoryCgroup_Enforced(t *testing.T) {
	cg := gctest.NewMemoryCgroup(t, 32<<20)
	// tail -c N holds the last N bytes of a pipe in memory.
	if out, err := cg.Command("sh", "-c", "head -c 1M /dev/zero | tail -c 1M >/dev/null").CombinedOutput(); err != nil {
		t.Fatalf("1 MiB in a 32 MiB cgroup: %v %q", err, out)
	}
	out, err := cg.Command("sh", "-c", "head -c 96M /dev/zero | tail -c 96M >/dev/null").CombinedOutput()
	if err == nil {
		t.Fatalf("a process holding 96 MiB in a 32 MiB cgroup was not killed: %q", out)
	}
	if n := cg.OOMKills(); n < 1 {
		t.Errorf("oom kills %d, want at least 1 (%v)", n, err)
	}
	if p := cg.Peak(); p > 32<<20 {
		t.Errorf("peak %d bytes, over the 32 MiB limit", p)
	}
	t.Logf("96 MiB in a 32 MiB cgroup (%s): %v, oom kills %d, peak %d KiB", cg.Dir, err, cg.OOMKills(), cg.Peak()>>10)
}
