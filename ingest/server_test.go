package ingest_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/ingest"
)

var timeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$`)

func TestServer_Event(t *testing.T) {
	s := startServer(t, ingest.Config{})
	before := time.Now().UTC().Add(-time.Second)
	code, body := s.post(t, "/v1.0/event", event("startup", `{"level":3,"time":41.25,"big":1e99999,"name":"Ünïcödé ☃"}`, testKey))
	if code != 204 || body != "" {
		t.Fatalf("got %d %q, want 204 and no body", code, body)
	}
	rows := s.rows(t)
	if len(rows) != 1 {
		t.Fatalf("got %d rows, want 1", len(rows))
	}
	r := rows[0]
	got := fmt.Sprint(r.ID, "|", r.EventType, "|", r.Application, "|", r.Version, "|", r.Platform, "|", r.UserID, "|", r.SessionID, "|", r.Value)
	want := `1|startup|My Game|1.0.3|Linux|7acafdde|s1|{"level":3,"time":41.25,"big":1e99999,"name":"Ünïcödé ☃"}`
	if got != want {
		t.Errorf("row:\ngot  %s\nwant %s", got, want)
	}
	if !timeRE.MatchString(r.Time) {
		t.Fatalf("time %q is not YYYY-MM-DD HH:MM:SS.ffffff", r.Time)
	}
	tm, _ := time.Parse("2006-01-02 15:04:05.000000", r.Time)
	if tm.Before(before) || tm.After(time.Now().UTC().Add(time.Second)) {
		t.Errorf("time %s is not now (UTC)", r.Time)
	}
}

// TestServer_Godot replays the Godot plugin's exact bytes over a raw TCP
// connection: no Content-Type, a bare array.
func TestServer_Godot(t *testing.T) {
	raw, err := os.ReadFile("testdata/godot/request.http")
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, ingest.Config{Keys: []string{ingest.DevKey}})
	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 204 || len(b) != 0 {
		t.Fatalf("got %d %q, want 204", resp.StatusCode, b)
	}
	var got []string
	for _, r := range s.rows(t) {
		got = append(got, strings.Join([]string{r.EventType, r.Application, r.Version, r.Platform, r.UserID, r.SessionID, r.Value}, "|"))
	}
	sess := "1df3ede7c90f9e9d8738aa6cdc1a75ec437da75b0536301b273b9d09a4d017ee"
	want := []string{
		"startup|My Game|1.0.3|Windows|7acafdde|" + sess + "|{}",
		"level_complete|My Game|1.0.3|Windows|7acafdde|" + sess + `|{"level":3,"time":41.25}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\ngot  %q\nwant %q", got, want)
	}
}

func TestServer_Statuses(t *testing.T) {
	s := startServer(t, ingest.Config{Keys: []string{testKey, "second-key"}, Limits: ingest.Limits{MaxBodyBytes: 4096, MaxBatchEvents: 3}})
	ok := event("e", `{"a":1}`, testKey)
	tests := []struct {
		name, method, path, body string
		code                     int
		want                     string // exact body, or a prefix ending in "..."
		rows                     int
	}{
		{"second key", "POST", "/v1.0/event", event("e", "", "second-key"), 204, "", 1},
		{"missing key", "POST", "/v1.0/event", event("e", "", ""), 401, `{"detail":"Invalid or missing API Key"}`, 0},
		{"wrong key", "POST", "/v1.0/event", event("e", "", "nope"), 401, `{"detail":"Invalid or missing API Key"}`, 0},
		{"key prefix", "POST", "/v1.0/event", event("e", "", testKey[:4]), 401, `{"detail":"Invalid or missing API Key"}`, 0},
		{"one bad key rejects the batch", "POST", "/v1.0/events", "[" + ok + "," + event("e", "", "nope") + "]", 401, `{"detail":"Invalid or missing API Key"}`, 0},
		{"one bad event rejects the batch", "POST", "/v1.0/events", "[" + ok + "," + event("e", "[]", testKey) + "]", 422,
			`{"detail":[{"loc":["body",1,"value"],"msg":"value is not a valid dict","type":"type_error.dict"}]}`, 0},
		{"malformed", "POST", "/v1.0/event", `{"event_type":`, 422,
			`{"detail":[{"loc":["body",14],"msg":"Expecting value: line 1 column 15 (char 14)","type":"value_error.jsondecode"}]}`, 0},
		{"empty batch", "POST", "/v1.0/events", "[]", 204, "", 0},
		{"batch", "POST", "/v1.0/events", "[" + ok + "," + ok + "]", 204, "", 2},
		{"double slash", "POST", "//v1.0/events", "[" + ok + "]", 204, "", 1},
		{"trailing slash", "POST", "/v1.0/event/", ok, 204, "", 1},
		{"unknown path", "POST", "/v1.0/nope", ok, 404, `{"detail":"Not Found"}`, 0},
		{"root", "GET", "/", "", 404, `{"detail":"Not Found"}`, 0},
		{"wrong method", "GET", "/v1.0/events", "", 405, `{"detail":"Method Not Allowed"}`, 0},
		{"body too large", "POST", "/v1.0/event", strings.Replace(ok, `{"a":1}`, `{"a":"`+strings.Repeat("x", 5000)+`"}`, 1), 413, `{"detail":"Request body too large...`, 0},
		{"too many events", "POST", "/v1.0/events", "[" + ok + "," + ok + "," + ok + "," + ok + "]", 413, `{"detail":"Too many events in one batch: the limit is 3"}`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(s.rows(t))
			req, _ := http.NewRequest(tt.method, s.URL+tt.path, strings.NewReader(tt.body))
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.code {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, b, tt.code)
			}
			if p, ok := strings.CutSuffix(tt.want, "..."); ok {
				if !bytes.HasPrefix(b, []byte(p)) {
					t.Errorf("body %s does not start with %s", b, p)
				}
			} else if string(b) != tt.want {
				t.Errorf("body:\ngot  %s\nwant %s", b, tt.want)
			}
			if tt.code >= 400 && resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q, want application/json", resp.Header.Get("Content-Type"))
			}
			if got := len(s.rows(t)) - before; got != tt.rows {
				t.Errorf("stored %d rows, want %d", got, tt.rows)
			}
		})
	}
}

// TestServer_ContentType: the body is JSON whatever the Content-Type says.
func TestServer_ContentType(t *testing.T) {
	s := startServer(t, ingest.Config{})
	for _, ct := range []string{"", "application/json", "application/x-www-form-urlencoded", "text/plain"} {
		req, _ := http.NewRequest("POST", s.URL+"/v1.0/event", strings.NewReader(event(ct, "", testKey)))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 204 {
			t.Errorf("Content-Type %q: got %d, want 204", ct, resp.StatusCode)
		}
	}
	if n := len(s.rows(t)); n != 4 {
		t.Errorf("got %d rows, want 4", n)
	}
}

// TestServer_Concurrent: many clients at once; every 204 has exactly its rows
// and nothing else is stored.
func TestServer_Concurrent(t *testing.T) {
	s := startServer(t, ingest.Config{})
	const clients, per = 32, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]int{}
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			client := &http.Client{}
			for i := 0; i < per; i++ {
				marker := fmt.Sprintf("c%d-%d", c, i)
				n := 1 + i%3
				var evs []string
				for j := 0; j < n; j++ {
					evs = append(evs, event(marker, "", testKey))
				}
				resp, err := client.Post(s.URL+"/v1.0/events", "", strings.NewReader("["+strings.Join(evs, ",")+"]"))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 204 {
					t.Errorf("got %d", resp.StatusCode)
					continue
				}
				mu.Lock()
				acked[marker] = n
				mu.Unlock()
			}
		}(c)
	}
	wg.Wait()
	stored := map[string]int{}
	for _, r := range s.rows(t) {
		stored[r.EventType]++
	}
	if len(stored) != len(acked) {
		t.Errorf("stored %d markers, acknowledged %d", len(stored), len(acked))
	}
	for m, n := range acked {
		if stored[m] != n {
			t.Errorf("%s: stored %d rows, acknowledged %d", m, stored[m], n)
		}
	}
}

// TestServer_Unavailable: a commit that cannot happen answers 503 with a
// detail, and nothing is stored.
func TestServer_Unavailable(t *testing.T) {
	s := startServer(t, ingest.Config{})
	if err := s.DB.Close(); err != nil {
		t.Fatal(err)
	}
	code, body := s.post(t, "/v1.0/event", event("e", "", testKey))
	if code != 503 || body != `{"detail":"Server is shutting down: the events were not stored"}` {
		t.Errorf("got %d %s", code, body)
	}
	if n := len(s.rows(t)); n != 0 {
		t.Errorf("got %d rows, want 0", n)
	}
}
