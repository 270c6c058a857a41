package ingest_test

import (
	"bytes"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/shard"
)

const testKey = "test-key-1"

// testServer is a real server on 127.0.0.1:0 writing to a real database in a
// temporary folder.
type testServer struct {
	URL    string // http://127.0.0.1:PORT
	Addr   string
	DBPath string
	DB     *shard.DB
	Srv    *ingest.Server
}

// startServer starts the server with cfg (Keys default to testKey) on a new
// database with default options, wired as the program wires it, and stops it
// when the test ends.
func startServer(tb testing.TB, cfg ingest.Config) *testServer {
	tb.Helper()
	s, _ := startWired(tb, cfg, shard.Options{})
	return s
}

// post sends body to path and returns the status and the response body.
func (s *testServer) post(tb testing.TB, path, body string) (int, string) {
	tb.Helper()
	resp, err := http.Post(s.URL+path, "", strings.NewReader(body))
	if err != nil {
		tb.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// row is one event row as read back from the database.
type row struct {
	ID                                                                  int64
	EventType, Application, Version, Platform, UserID, SessionID, Value string
	Time                                                                string
}

// rows reads every row of the event table, in id order, through a separate
// connection. time is read as the stored text (the driver would parse a
// DATETIME column into a time.Time).
func (s *testServer) rows(tb testing.TB) []row {
	tb.Helper()
	return readRows(tb, s.DBPath)
}

func readRows(tb testing.TB, path string) []row {
	tb.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	rs, err := db.Query(`SELECT id, event_type, application, version, platform, user_id, session_id, value, time || '' FROM event_all ORDER BY id`)
	if err != nil {
		tb.Fatalf("read rows: %v", err)
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		var r row
		if err := rs.Scan(&r.ID, &r.EventType, &r.Application, &r.Version, &r.Platform, &r.UserID, &r.SessionID, &r.Value, &r.Time); err != nil {
			tb.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// event renders one event object with the given fields; "" leaves value out.
func event(eventType, value, key string) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"event_type":%q,"application":"My Game","version":"1.0.3","platform":"Linux","user_id":"7acafdde","session_id":"s1"`, eventType)
	if value != "" {
		fmt.Fprintf(&b, `,"value":%s`, value)
	}
	if key != "" {
		fmt.Fprintf(&b, `,"api_key":%q`, key)
	}
	b.WriteByte('}')
	return b.String()
}
