package ingest_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/ingest"
)

// rawExchange writes req on a new connection and reads one response.
func rawExchange(t *testing.T, addr, req string) (int, http.Header, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestServer_NoEcho: a request the server cannot read is answered with a
// fixed 400 that quotes none of its bytes.
func TestServer_NoEcho(t *testing.T) {
	s := startServer(t, ingest.Config{})
	for name, req := range map[string]string{
		"header line without colon": "POST /v1.0/event HTTP/1.1\r\nHost: x\r\nBadHeaderSECRETKEY\r\nContent-Length: 2\r\n\r\n{}",
		"bad request line":          "SECRETKEY\r\n\r\n",
		"bad content length":        "POST /v1.0/event HTTP/1.1\r\nHost: x\r\nContent-Length: SECRETKEY\r\n\r\n{}",
	} {
		t.Run(name, func(t *testing.T) {
			code, _, body := rawExchange(t, s.Addr, req)
			if code != 400 || body != `{"detail":"Bad Request"}` {
				t.Errorf("got %d %q, want 400 {\"detail\":\"Bad Request\"}", code, body)
			}
		})
	}
}

// TestServer_MultipartNotPreParsed: a multipart body reaches the handler,
// which refuses it as JSON (422), instead of fasthttp parsing the form first
// (a 400 for a bad form, temporary files for a large one).
func TestServer_MultipartNotPreParsed(t *testing.T) {
	s := startServer(t, ingest.Config{})
	body := "--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nv\r\n--b--\r\n"
	req := "POST /v1.0/event HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body
	code, _, got := rawExchange(t, s.Addr, req)
	if code != 422 {
		t.Errorf("got %d %q, want 422", code, got)
	}
	req = "POST /v1.0/event HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 7\r\n\r\ngarbage"
	if code, _, got := rawExchange(t, s.Addr, req); code != 422 {
		t.Errorf("malformed form: got %d %q, want 422", code, got)
	}
}

// TestServer_ExactPaths: only the ingest paths are cleaned up; every other
// route matches exactly, so no spelling of /metrics but the one reaches it.
func TestServer_ExactPaths(t *testing.T) {
	s := startServer(t, ingest.Config{})
	get := func(path string) int {
		code, _, _ := rawExchange(t, s.Addr, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		return code
	}
	for path, want := range map[string]int{
		"/metrics": 200, "/healthz": 200, "/docs": 200, "/docs?x=1": 200, "/metrics?x": 200,
		"/metrics/": 404, "/metrics%2F": 404, "/metrics%2f": 404, "/metrics/.": 404, "/metrics/./": 404,
		"//metrics": 404, "/./metrics": 404, "/x/../metrics": 404, "/%6detrics": 404, "/healthz/": 404, "/docs/": 404,
	} {
		if got := get(path); got != want {
			t.Errorf("GET %s: got %d, want %d", path, got, want)
		}
	}
	for _, path := range []string{"/v1.0/event", "/v1.0/event/", "//v1.0/event", "/v1.0//event", "/v1.0/event%2F", "/v1.0/./event"} {
		if code, body := s.post(t, path, event("exact", "", testKey)); code != 204 {
			t.Errorf("POST %s: got %d %s, want 204", path, code, body)
		}
	}
	if n := len(s.rows(t)); n != 6 {
		t.Errorf("rows: got %d, want 6", n)
	}
}

// TestServer_InflightBudget: a body that would take the bytes in flight over
// MaxInflightBytes gets 503, Retry-After: 1 and a JSON detail; the budget is
// given back, so the next small event is stored.
func TestServer_InflightBudget(t *testing.T) {
	s := startServer(t, ingest.Config{MaxInflightBytes: 128 << 10})
	big := "[" + strings.Repeat(event("big", `{"p":"`+strings.Repeat("x", 900)+`"}`, testKey)+",", 200) + event("big", "", testKey) + "]"
	code, h, body := rawExchange(t, s.Addr, fmt.Sprintf("POST /v1.0/events HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(big), big))
	if code != 503 || h.Get("Retry-After") != "1" || !strings.HasPrefix(body, `{"detail":"Server busy`) {
		t.Errorf("over the budget: got %d Retry-After %q %s, want 503, 1 and a detail", code, h.Get("Retry-After"), body)
	}
	for i := range 3 {
		if code, body := s.post(t, "/v1.0/event", event("small", "", testKey)); code != 204 {
			t.Fatalf("small event %d after: got %d %s, want 204", i, code, body)
		}
	}
	if n := len(s.rows(t)); n != 3 {
		t.Errorf("rows: got %d, want the 3 small events", n)
	}
}

// TestServer_AnnouncedLength: a Content-Length over MaxBodyBytes is refused
// (413) once fasthttp's first read of at most 8 KiB is in, long before the
// announced body arrives.
func TestServer_AnnouncedLength(t *testing.T) {
	s := startServer(t, ingest.Config{})
	code, _, body := rawExchange(t, s.Addr, fmt.Sprintf("POST /v1.0/events HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n[%s", 64<<20, strings.Repeat(" ", 8<<10)))
	if code != 413 || !strings.Contains(body, "too large") {
		t.Errorf("got %d %s, want 413", code, body)
	}
}
