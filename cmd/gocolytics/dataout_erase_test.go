package main

import (
	"bufio"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

// victimEvents are n events of user in application app.
func victimEvents(user, app string, n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`{"event_type":"v%d","application":%q,"version":"1","platform":"p","user_id":%q,"session_id":"s","value":{},"api_key":"`+gctest.Key+`"}`, i, app, user)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// TestDataOut_Erase: erasure by HTTP and by the subcommand while ingest
// runs, as one process and with two workers (the DELETE lands on a worker
// and goes over the link); the user's rows are gone, every other row
// stays, /metrics counts them; ingest keys get 401; SQL-looking and
// over-long user ids change nothing.
func TestDataOut_Erase(t *testing.T) {
	t.Parallel()
	for _, workers := range []string{"1", "2"} {
		t.Run("workers="+workers, func(t *testing.T) {
			p := gctest.Start(t, "", "--workers", workers, "--admin-keys", `["`+testAdminKey+`"]`)
			postEvents(t, p.Addr, victimEvents("victim", "A", 900))
			postEvents(t, p.Addr, victimEvents("victim", "B", 40))
			postEvents(t, p.Addr, victimEvents("bystander", "A", 30))
			l := gctest.Load{Addr: p.Addr, Clients: 8, Batches: true, NewConns: true}.Start()
			gctest.WaitFor(t, func() bool { return l.Count(204) >= 200 }, "200 acknowledged")

			base := "http://" + p.Addr + "/v1.0/users/"
			if code, body, _ := adminReq(t, "DELETE", base+"victim", gctest.Key); code != 401 {
				t.Errorf("ingest key: %d %s, want 401", code, body)
			}
			if code, body, _ := adminReq(t, "DELETE", base+"victim?application=A", testAdminKey); code != 200 || body != `{"deleted":900}` {
				t.Errorf("erase in A: %d %s, want 200 {\"deleted\":900}", code, body)
			}
			if code, body, _ := adminReq(t, "DELETE", base+"victim?application=A", testAdminKey); code != 200 || body != `{"deleted":0}` {
				t.Errorf("again: %d %s, want {\"deleted\":0}", code, body)
			}
			if n := queryInt(t, p.DBPath, "SELECT count(*) FROM event_all WHERE user_id = 'victim' AND application = 'B'"); n != 40 {
				t.Errorf("application B: %d rows, want 40 untouched", n)
			}
			// The subcommand, through the running server's writer.
			stdout, stderr, code := cli(t, "forget", "victim", "--sqlite-file-path", p.DBPath)
			if code != 0 || stdout != "{\"deleted\":40}\n" || !strings.Contains(stderr, "running server") {
				t.Errorf("forget: exit %d, %q %q", code, stdout, stderr)
			}
			for _, id := range []string{"' OR 1=1 --", "'; DELETE FROM event; --", "%", "*"} {
				if code, body, _ := adminReq(t, "DELETE", base+url.PathEscape(id), testAdminKey); code != 200 || body != `{"deleted":0}` {
					t.Errorf("%q: %d %s, want {\"deleted\":0}", id, code, body)
				}
			}
			if status := rawStatus(t, p.Addr, "DELETE /v1.0/users/"+strings.Repeat("x", 10000)+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+testAdminKey+"\r\n\r\n"); !strings.Contains(status, " 431 ") {
				t.Errorf("10,000-character user id: %q, want 431", status)
			}
			if code, body, _ := adminReq(t, "DELETE", base+strings.Repeat("x", 1025), testAdminKey); code != 422 || !strings.Contains(body, `"user_id"`) {
				t.Errorf("1,025-character user id: %d %s, want 422 naming user_id", code, body)
			}
			if _, _, code := cli(t, "forget", strings.Repeat("x", 10000), "--sqlite-file-path", p.DBPath); code != 2 {
				t.Errorf("forget of a 10,000-character id: exit %d, want 2", code)
			}
			gctest.WaitMetric(t, p.Addr, `gocolytics_rows_deleted_total{reason="erasure"}`, 940)
			l.Stop()
			p.Stop(t)
			if n := queryInt(t, p.DBPath, "SELECT count(*) FROM event_all WHERE user_id = 'victim'"); n != 0 {
				t.Errorf("%d rows of the erased user left", n)
			}
			if n := queryInt(t, p.DBPath, "SELECT count(*) FROM event_all WHERE user_id = 'bystander'"); n != 30 {
				t.Errorf("bystander: %d rows, want 30", n)
			}
			checkAcked(t, l, p.DBPath)
		})
	}
}

// TestDataOut_ForgetOffline: with no server running, forget opens the
// database itself.
func TestDataOut_ForgetOffline(t *testing.T) {
	t.Parallel()
	p := gctest.Start(t, "")
	postEvents(t, p.Addr, victimEvents("victim", "A", 12))
	postEvents(t, p.Addr, victimEvents("other", "A", 3))
	p.Stop(t)
	stdout, stderr, code := cli(t, "forget", "--sqlite-file-path", p.DBPath, "--", "victim")
	if code != 0 || stdout != "{\"deleted\":12}\n" || !strings.Contains(stderr, "no server") {
		t.Errorf("forget: exit %d, %q %q", code, stdout, stderr)
	}
	if n := queryInt(t, p.DBPath, "SELECT count(*) FROM event_all"); n != 3 {
		t.Errorf("%d rows left, want the other user's 3", n)
	}
	// The server summarised the rows when it stopped: the player is gone
	// from the dashboard's summary tables too.
	if n := queryInt(t, p.DBPath, "SELECT (SELECT count(*) FROM stats_activity WHERE user_id = 'victim') + (SELECT count(*) FROM stats_user WHERE user_id = 'victim')"); n != 0 {
		t.Errorf("%d summary rows of the erased user left", n)
	}
	shardtest.CheckSummaries(t, p.DBPath)
	if _, stderr, code := cli(t, "forget", "x", "--sqlite-file-path", filepath.Join(t.TempDir(), "none.db")); code != 2 || !strings.Contains(stderr, "no database") {
		t.Errorf("missing database: exit %d %q, want 2", code, stderr)
	}
}

// TestDataOut_EraseEventType: an event of ERASE_EVENT_TYPE deletes the
// earlier rows of its user and application.
func TestDataOut_EraseEventType(t *testing.T) {
	t.Parallel()
	p := gctest.Start(t, "", "--erase-event-type", "delete_my_data")
	postEvents(t, p.Addr, victimEvents("player", "A", 50))
	postEvents(t, p.Addr, victimEvents("player", "B", 5))
	postEvents(t, p.Addr, victimEvents("friend", "A", 7))
	postEvents(t, p.Addr, `[{"event_type":"delete_my_data","application":"A","version":"1","platform":"p","user_id":"player","session_id":"s","value":{},"api_key":"`+gctest.Key+`"}]`)
	gctest.WaitFor(t, func() bool {
		return queryInt(t, p.DBPath, "SELECT count(*) FROM event_all WHERE user_id = 'player' AND application = 'A'") == 1
	}, "the player's rows in A erased")
	for q, want := range map[string]int{
		"SELECT count(*) FROM event_all WHERE event_type = 'delete_my_data'": 1,
		"SELECT count(*) FROM event_all WHERE application = 'B'":             5,
		"SELECT count(*) FROM event_all WHERE user_id = 'friend'":            7,
	} {
		if n := queryInt(t, p.DBPath, q); n != want {
			t.Errorf("%s: %d, want %d", q, n, want)
		}
	}
}

// writeDatabase writes a new database at path through the writer, one
// transaction per batch, as a server would have.
func writeDatabase(t *testing.T, path string, batches ...[]shard.Event) {
	t.Helper()
	db := shard.New(path, shard.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, b := range batches {
		if err := db.Write(0, b); err != nil {
			t.Fatal(err)
		}
	}
}

// agedDatabase writes a new database through the writer with 3,000 rows of
// user "old" from 2020, 20 of "recent" from three days ago and 5 of "now",
// for the tests of retention, and returns its path.
func agedDatabase(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	rows := func(n int, at time.Time, user string) []shard.Event {
		ev := make([]shard.Event, n)
		for i := range ev {
			ev[i] = shard.Event{EventType: "t", Application: "a", Version: "1", Platform: "p", UserID: user, SessionID: "s", Value: "{}", Time: at}
		}
		return ev
	}
	writeDatabase(t, path, rows(3000, time.Date(2020, 5, 1, 12, 0, 0, 0, time.UTC), "old"), rows(20, time.Now().AddDate(0, 0, -3), "recent"), rows(5, time.Now(), "now"))
	return path
}

// TestDataOut_Retention: rows from 2020 are deleted at start, recent ones
// kept, and /metrics counts them.
func TestDataOut_Retention(t *testing.T) {
	t.Parallel()
	path := agedDatabase(t)
	p := gctest.Start(t, path, "--retention-days", "30")
	gctest.WaitFor(t, func() bool { return queryInt(t, path, "SELECT count(*) FROM event_all WHERE user_id = 'old'") == 0 }, "rows from 2020 deleted")
	if n := queryInt(t, path, "SELECT count(*) FROM event_all"); n != 25 {
		t.Errorf("%d rows left, want the 25 recent ones", n)
	}
	gctest.WaitMetric(t, p.Addr, `gocolytics_rows_deleted_total{reason="retention"}`, 3000)
}

// TestDataOut_Backup: a backup taken during load passes integrity_check and
// holds every event acknowledged before it started; scheduled backups
// keep BACKUP_KEEP.
func TestDataOut_Backup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := gctest.Start(t, "", "--backup-dir", filepath.Join(dir, "scheduled"), "--backup-interval", "1s", "--backup-keep", "2")
	before := gctest.Load{Addr: p.Addr, Prefix: "before", Clients: 8, Batches: true}.Start()
	gctest.WaitFor(t, func() bool { return before.Count(204) >= 300 }, "300 acknowledged")
	// Every 204 of this load came before the backup starts; another load
	// goes on during it.
	before.Stop()
	during := gctest.Load{Addr: p.Addr, Prefix: "during", Clients: 8, Batches: true}.Start()
	gctest.WaitFor(t, func() bool { return during.Count(204) >= 100 }, "100 acknowledged")
	file := filepath.Join(dir, "backup.db")
	if _, stderr, code := cli(t, "backup", "--sqlite-file-path", p.DBPath, file); code != 0 {
		t.Fatalf("backup: exit %d %s", code, stderr)
	}
	if _, _, code := cli(t, "backup", "--sqlite-file-path", p.DBPath, file); code != 2 {
		t.Errorf("backup onto an existing file: exit %d, want 2", code)
	}
	gctest.WaitFor(t, func() bool { return during.Count(204) >= 400 }, "300 more acknowledged")
	during.Stop()
	if err := shard.IntegrityCheck(file); err != nil {
		t.Error(err)
	}
	if lost := before.Lost(markers(t, file)); len(lost) > 0 {
		t.Errorf("%d events acknowledged before the backup are not in it, the first: %v", len(lost), lost[:min(5, len(lost))])
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("backup mode %v, want 0600", fi.Mode().Perm())
	}
	gctest.WaitFor(t, func() bool { return strings.Count(p.Log(), "backup written") >= 4 }, "four scheduled backups")
	// Stopped first: a running server may be between its next backup's
	// rename and the rotation (3 files for a moment); the stop waits for
	// a backup under way and its rotation.
	p.Stop(t)
	names, _, err := shard.Backups(filepath.Join(dir, "scheduled"))
	if err != nil || len(names) != 2 {
		t.Fatalf("scheduled backups kept: %v, %v; want 2", names, err)
	}
	for _, n := range names {
		if err := shard.IntegrityCheck(n); err != nil {
			t.Error(err)
		}
	}
	before.CheckStored(t, p.DBPath)
	during.CheckStored(t, p.DBPath)
}

// TestDataOut_BadInput: bad parameters of the subcommands exit 2 naming
// what is wrong, and change nothing; --help exits 0.
func TestDataOut_BadInput(t *testing.T) {
	t.Parallel()
	p := gctest.Start(t, "")
	postEvents(t, p.Addr, victimEvents("u", "A", 5))
	db := p.DBPath
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"export", "--since", "2026-13-01"}, "--since"},
		{[]string{"export", "--until", "yesterday"}, "--until"},
		{[]string{"export", "--limit", "-1"}, "--limit"},
		{[]string{"export", "--limit", "99999999999999999999"}, "--limit"},
		{[]string{"export", "--format", "xml"}, "--format"},
		{[]string{"export", "--after-id", "x"}, "--after-id"},
		{[]string{"export", "--application", strings.Repeat("a", 10000)}, "--application"},
		{[]string{"export", "--bogus"}, "bogus"},
		{[]string{"export", "surplus"}, "argument"},
		{[]string{"forget"}, "argument"},
		{[]string{"forget", ""}, "USER_ID"},
		{[]string{"backup"}, "argument"},
		{[]string{"backup", db}, "database itself"},
		{[]string{"export", "--retention-days", "-1"}, "RETENTION_DAYS"},
	} {
		_, stderr, code := cli(t, append(tc.args, "--sqlite-file-path", db)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%.60v: exit %d, %q; want 2 naming %s", tc.args, code, stderr, tc.want)
		}
	}
	// A file that is not a regular one (here a pipe; /dev/null alike) is
	// written in place, never replaced by a renamed file.
	fifo := filepath.Join(t.TempDir(), "pipe")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		b, _ := os.ReadFile(fifo)
		got <- string(b)
	}()
	if _, stderr, code := cli(t, "export", "--sqlite-file-path", db, "--output", fifo); code != 0 {
		t.Errorf("export to a pipe: exit %d %s", code, stderr)
	}
	if out := <-got; strings.Count(out, "\n") != 5 {
		t.Errorf("read from the pipe: %q, want 5 lines", out)
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("the pipe was replaced: %v %v", fi.Mode(), err)
	}
	if _, _, code := cli(t, "export", "--sqlite-file-path", db, "--output", t.TempDir()); code != 2 {
		t.Errorf("export to a folder: exit %d, want 2", code)
	}
	if _, _, code := cli(t, "export", "--sqlite-file-path", filepath.Join(t.TempDir(), "none.db")); code != 2 {
		t.Errorf("export of a missing database: exit %d, want 2", code)
	}
	for _, sub := range []string{"export", "forget", "backup"} {
		if _, stderr, code := cli(t, sub, "--help"); code != 0 || !strings.Contains(stderr, "Usage: gocolytics "+sub) {
			t.Errorf("%s --help: exit %d %.200q", sub, code, stderr)
		}
	}
	if n := queryInt(t, db, "SELECT count(*) FROM event_all"); n != 5 {
		t.Errorf("%d rows, want the 5 posted", n)
	}
	resp, err := http.Get("http://" + p.Addr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("server unhealthy after bad input: %v %v", resp, err)
	}

}

// checkAcked fails the test unless every event the load got a 204 for is
// in the database at path (which also holds rows of the test's own, so
// gctest's CheckStored, which wants every row a marked one, does not fit).
func checkAcked(t *testing.T, l *gctest.Ledger, path string) {
	t.Helper()
	if l.AckedCount() == 0 {
		t.Fatalf("nothing acknowledged: %v", l.Statuses())
	}
	if lost := l.Lost(markers(t, path)); len(lost) > 0 {
		t.Errorf("%d acknowledged events missing, the first: %v", len(lost), lost[:min(5, len(lost))])
	}
}

// markers are the markers ({"m": marker} values) stored at path.
func markers(t *testing.T, path string) map[string]bool {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT json_extract(value, '$.m') FROM event_all WHERE json_extract(value, '$.m') IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var m string
		rows.Scan(&m)
		out[m] = true
	}
	return out
}

// rawStatus sends a raw request and returns the status line of the answer.
// The server may answer before the request is all read (a 431) and close:
// a failed write is then expected, the answer is still read.
func rawStatus(t *testing.T, addr, request string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte(request))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}
