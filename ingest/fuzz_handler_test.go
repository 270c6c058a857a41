package ingest_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/ingest"
)

// handlerSeeds are bodies that reach every branch of the handler.
var handlerSeeds = []string{
	event("seed", `{"k":[1,2,{"x":null}]}`, testKey),
	"[" + event("a", "", testKey) + "," + event("b", `{"n":1e99999}`, testKey) + "]",
	"[" + event("a", "", testKey) + ",," + event("b", `{"n":nan,"m":-inf}`, testKey) + "]",
	event("nokey", `{}`, ""),
	event("badkey", `{}`, "nope"),
	`{"event_type":1}`,
	`[]`,
	`[{}]`,
	`{"event_type":"\ud83c\udfae","application":"\u0000","version":"","platform":"","user_id":"","session_id":"","api_key":"` + testKey + `"}`,
	`not json`,
	``,
}

// FuzzHandler: whatever the body, path and Content-Encoding, the real
// handler answers 204 or a 4xx with a JSON detail, never a 5xx; a 204 means
// exactly the events the decoder reads from the body are in the database,
// field for field, and any other answer means nothing was stored.
func FuzzHandler(f *testing.F) {
	for i, s := range handlerSeeds {
		for enc := range uint8(4) {
			f.Add(uint8(i), enc, []byte(s))
		}
	}
	srv := startServer(f, ingest.Config{Lenient: true})
	db, err := sql.Open("sqlite3", "file:"+srv.DBPath+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	client := &http.Client{Timeout: 10 * time.Second}
	f.Fuzz(func(t *testing.T, route, enc uint8, body []byte) {
		paths := []string{"/v1.0/event", "/v1.0/events", "//v1.0/events/", "/v1.0/event/"}
		path := paths[int(route)%len(paths)]
		batch := strings.Contains(path, "events")
		sent, header := body, ""
		switch enc % 4 {
		case 1:
			sent, header = fuzzGzip(body), "gzip"
		case 2:
			sent, header = fuzzZlib(body), "deflate"
		case 3:
			// Not gzip at all, but labelled so.
			header = "gzip"
		}
		before := fuzzRowCount(t, db)
		req, _ := http.NewRequest("POST", srv.URL+path, bytes.NewReader(sent))
		if header != "" {
			req.Header.Set("Content-Encoding", header)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		after := fuzzRowCount(t, db)

		if resp.StatusCode != 204 {
			var p struct{ Detail any }
			if resp.StatusCode >= 500 || resp.StatusCode < 400 || json.Unmarshal(got, &p) != nil || p.Detail == nil {
				t.Fatalf("got %d %q, want 204 or a 4xx with a JSON detail", resp.StatusCode, got)
			}
			if after != before {
				t.Fatalf("answered %d, but %d rows were stored", resp.StatusCode, after-before)
			}
			return
		}
		plain := body
		if enc%4 == 3 {
			// The fuzzer wrote gzip itself.
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatalf("a body that is not gzip was answered 204")
			}
			if plain, err = io.ReadAll(zr); err != nil {
				t.Fatalf("a body that is not gzip was answered 204: %v", err)
			}
		}
		var d ingest.Decoded
		if p := ingest.Decode(plain, batch, true, ingest.DefaultLimits(), &d); p != nil {
			t.Fatalf("answered 204, but the decoder says %d %s", p.Status, p.Body())
		}
		if after-before != len(d.Events) {
			t.Fatalf("answered 204 for %d events, %d rows stored", len(d.Events), after-before)
		}
		if len(d.Events) == 0 {
			return
		}
		rows := fuzzLastRows(t, db, len(d.Events))
		for i, e := range d.Events {
			r := rows[i]
			if r.EventType != e.EventType || r.Application != e.Application || r.Version != e.Version ||
				r.Platform != e.Platform || r.UserID != e.UserID || r.SessionID != e.SessionID || r.Value != e.Value {
				t.Fatalf("event %d: stored %+v, decoded %+v", i, r, e)
			}
		}
	})
}

// FuzzHandlerRaw: raw bytes on a TCP connection (pipelined requests, broken
// request lines and headers, bodies shorter or longer than announced) get
// only well-formed HTTP answers, none a 5xx, and the server keeps serving.
func FuzzHandlerRaw(f *testing.F) {
	for _, s := range handlerSeeds[:4] {
		f.Add([]byte("POST /v1.0/event HTTP/1.1\r\nHost: x\r\nContent-Length: " + itoa(len(s)) + "\r\n\r\n" + s))
	}
	f.Add([]byte("POST /v1.0/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte("POST /v1.0/event HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n{}"))
	f.Add([]byte("OPTIONS /v1.0/event HTTP/1.1\r\nHost: x\r\nOrigin: http://a\r\nAccess-Control-Request-Method: POST\r\n\r\n"))
	f.Add([]byte("GET /metrics HTTP/1.0\r\n\r\n"))
	f.Add([]byte("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"))
	srv := startServer(f, ingest.Config{Lenient: true, ReadTimeout: time.Second})
	client := &http.Client{Timeout: 10 * time.Second}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := net.Dial("tcp", srv.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			c.Write(raw)
			c.(*net.TCPConn).CloseWrite()
		}()
		br := bufio.NewReader(c)
		for {
			resp, rerr := http.ReadResponse(br, nil)
			if rerr != nil {
				_, err := br.Peek(1)
				var netErr net.Error
				switch {
				case err == nil:
					t.Fatalf("the server sent what is not an HTTP answer: %v", rerr)
				case errors.As(err, &netErr) && netErr.Timeout():
					// READ_TIMEOUT is 1 s: the server must have answered
					// and closed long before.
					t.Fatalf("the server neither answered nor closed the connection within 10 s")
				}
				break
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				t.Fatalf("got %d", resp.StatusCode)
			}
		}
		resp, err := client.Post(srv.URL+"/v1.0/event", "", strings.NewReader(event("alive", "", testKey)))
		if err != nil {
			t.Fatalf("after the raw request: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 204 {
			t.Fatalf("after the raw request: got %d", resp.StatusCode)
		}
	})
}

func fuzzGzip(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func fuzzZlib(b []byte) []byte {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func fuzzRowCount(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM event_all").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// lastRows returns the last n rows, oldest first.
func fuzzLastRows(t *testing.T, db *sql.DB, n int) []row {
	t.Helper()
	rs, err := db.Query(`SELECT event_type, application, version, platform, user_id, session_id, value FROM event_all ORDER BY id DESC LIMIT ?`, n)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	out := make([]row, n)
	i := n
	for rs.Next() {
		i--
		r := &out[i]
		if err := rs.Scan(&r.EventType, &r.Application, &r.Version, &r.Platform, &r.UserID, &r.SessionID, &r.Value); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
