package main

import (
	"bufio"
	"compress/gzip"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/ingest/admin"
)

const testAdminKey = "test-admin-key"

// python3 is Debian's Python (where python3-pandas installs), or any on
// PATH; the test skips when there is none.
func python3(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("python3 is not installed (Debian package python3)")
	return ""
}

// readBack reads an export back with Python (csv, pandas or ndjson) and
// compares it with the database row by row (testdata/dataout/readback.py);
// it returns the rows read.
func readBack(t *testing.T, reader, export, dbPath string) int {
	t.Helper()
	out, err := exec.Command(python3(t), "testdata/dataout/readback.py", reader, export, dbPath).CombinedOutput()
	if reader == "pandas" && strings.HasPrefix(string(out), "no pandas") {
		t.Skip("pandas is not installed (Debian package python3-pandas)")
	}
	var n int
	if _, serr := fmt.Sscanf(string(out), "ok %d", &n); err != nil || serr != nil {
		t.Fatalf("%s read-back: %v\n%s", reader, err, out)
	}
	return n
}

// cli runs a subcommand of the binary with an empty .env and returns its
// standard output, standard error and exit code.
func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	args = append([]string{args[0], "--env-file", gctest.EnvFile(t, "")}, args[1:]...)
	cmd := exec.Command(gctest.Binary(t), args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), 0
}

// adminReq sends an admin request with key (none when empty) and returns
// the status, the (gunzipped) body and the trailers.
func adminReq(t *testing.T, method, u, key string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		if r, err = gzip.NewReader(resp.Body); err != nil {
			t.Fatal(err)
		}
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	return resp.StatusCode, string(b), resp.Trailer
}

// queryInt runs a count or similar on the database, read-only.
func queryInt(t *testing.T, dbPath, q string, args ...any) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+dbPath+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// oddEvents are rows whose values an export must keep exactly.
const oddEvents = `[
 {"event_type":"odd","application":"Émoji 😀","version":"1","platform":"p","user_id":"nul\u0000user","session_id":"s\"q,\nline","value":{"big":1e99999,"e":"😀","nul":"a\u0000b","n":[1,2.5,null,-0.0]},"api_key":"` + gctest.Key + `"},
 {"event_type":"odd","application":"Émoji 😀","version":"1","platform":"p","user_id":"' OR 1=1 --","session_id":"s","value":{"sql":"'; DROP TABLE event; --"},"api_key":"` + gctest.Key + `"}]`

func postEvents(t *testing.T, addr, body string) {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/v1.0/events", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("post: %d %s", resp.StatusCode, b)
	}
}

// TestDataOut_Export: exports over HTTP (paged by after_id, gzipped) and by
// the subcommand (CSV and NDJSON) while ingest runs; read back by Python's
// csv module, pandas and json, row for row equal to the database; paging
// covers every row exactly once; filters; 401 for an ingest key.
func TestDataOut_Export(t *testing.T) {
	t.Parallel()
	p := gctest.Start(t, "", "--admin-keys", `["`+testAdminKey+`"]`)
	postEvents(t, p.Addr, oddEvents)
	l := gctest.Load{Addr: p.Addr, Clients: 8, Batches: true, NewConns: true}.Start()
	gctest.WaitFor(t, func() bool { return l.Count(204) >= 300 }, "300 acknowledged")

	if code, body, _ := adminReq(t, "GET", "http://"+p.Addr+"/v1.0/export", gctest.Key); code != 401 || body != admin.UnauthorizedBody {
		t.Errorf("ingest key: got %d %s, want 401", code, body)
	}
	// The exports run while ingest does; they are read back once the load
	// has stopped (below), so that the load does not go on filling the
	// database, for the paging to read, while Python starts.
	dir := t.TempDir()
	exports := map[string]string{}
	for _, format := range []string{"csv", "ndjson"} {
		out := filepath.Join(dir, "export."+format)
		if _, stderr, code := cli(t, "export", "--sqlite-file-path", p.DBPath, "--format", format, "--output", out); code != 0 {
			t.Fatalf("export %s: exit %d\n%s", format, code, stderr)
		}
		exports[format] = out
	}

	// Paging by after_id while ingest runs, then after it stopped: every
	// row exactly once, in id order.
	var ids []int64
	page := func() int {
		after := int64(0)
		if len(ids) > 0 {
			after = ids[len(ids)-1]
		}
		code, body, trailer := adminReq(t, "GET", fmt.Sprintf("http://%s/v1.0/export?after_id=%d&limit=250", p.Addr, after), testAdminKey)
		if code != 200 {
			t.Fatalf("export page: %d %s", code, body)
		}
		n := 0
		sc := bufio.NewScanner(strings.NewReader(body))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var row struct{ ID int64 }
			if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			ids = append(ids, row.ID)
			n++
		}
		if n > 0 && trailer.Get(admin.TrailerLastID) != fmt.Sprint(ids[len(ids)-1]) {
			t.Errorf("trailer %s: %q, want %d", admin.TrailerLastID, trailer.Get(admin.TrailerLastID), ids[len(ids)-1])
		}
		return n
	}
	for range 5 {
		page()
	}
	l.Stop()
	for format, readers := range map[string][]string{"csv": {"csv", "pandas"}, "ndjson": {"ndjson"}} {
		for _, r := range readers {
			if n := readBack(t, r, exports[format], p.DBPath); n < 302 {
				t.Errorf("%s: %d rows read back, want at least 302", r, n)
			}
		}
	}
	for page() > 0 {
	}
	if want := queryInt(t, p.DBPath, "SELECT count(*) FROM event_all"); len(ids) != want {
		t.Errorf("paging: %d rows, the database has %d", len(ids), want)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("paging: id %d after %d", ids[i], ids[i-1])
		}
	}
	if ids[len(ids)-1] != int64(queryInt(t, p.DBPath, "SELECT max(id) FROM event_all")) {
		t.Errorf("paging did not reach the last row")
	}

	// Filters.
	count := func(q string) int {
		code, body, _ := adminReq(t, "GET", "http://"+p.Addr+"/v1.0/export?"+q, testAdminKey)
		if code != 200 {
			t.Fatalf("%s: %d %s", q, code, body)
		}
		return strings.Count(body, "\n")
	}
	for q, want := range map[string]int{
		"application=" + url.QueryEscape("Émoji 😀"):                                        2,
		"application=" + url.QueryEscape("' OR 1=1 --"):                                    0,
		"event_type=odd&format=ndjson":                                                     2,
		"since=2020-01-01&until=" + time.Now().UTC().AddDate(0, 0, 1).Format("2006-01-02"): len(ids),
		"since=" + time.Now().UTC().AddDate(0, 0, 1).Format("2006-01-02"):                  0,
		"limit=10": 10,
	} {
		if got := count(q); got != want {
			t.Errorf("%s: %d lines, want %d", q, got, want)
		}
	}
}

// TestDataOut_ExportPycolytics: a Pycolytics database's old rows come out
// exactly, in both formats.
func TestDataOut_ExportPycolytics(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "pycolytics.db")
	copyFile(t, "../../shard/testdata/pycolytics/pycolytics.db", db, 0o600)
	for _, f := range []string{"ndjson", "csv"} {
		out := filepath.Join(t.TempDir(), "out")
		if _, stderr, code := cli(t, "export", "--sqlite-file-path", db, "--format", f, "--output", out); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if n := readBack(t, map[string]string{"ndjson": "ndjson", "csv": "csv"}[f], out, db); n != queryInt(t, db, "SELECT count(*) FROM event") || n == 0 {
			t.Errorf("%s: %d rows", f, n)
		}
	}
}
