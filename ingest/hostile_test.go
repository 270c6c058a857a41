package ingest_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
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

// TestServer_SlowClientsTimedOut: a client that sends its request, body
// included, slower than READ_TIMEOUT allows, or stops halfway, has its
// connection answered or closed within about READ_TIMEOUT, whatever the
// stage it stalls in: a streamed body is read under the same deadline as
// the headers, and a body over the in-flight budget is drained under it too.
func TestServer_SlowClientsTimedOut(t *testing.T) {
	const readTimeout = time.Second
	s := startServer(t, ingest.Config{ReadTimeout: readTimeout, MaxInflightBytes: 64 << 10})
	ev := event("slow", "", testKey)
	full := fmt.Sprintf("POST /v1.0/event HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(ev), ev)
	cases := []struct {
		name        string
		first, each string
	}{
		{"headers trickle", "POST /v1.0/event HTTP/1.1\r\n", "X-A: b\r\n"},
		{"body stops", "POST /v1.0/event HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"event_type\"", ""},
		{"body trickle", "POST /v1.0/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n[", " "},
		{"chunked trickle", "POST /v1.0/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n[\r\n", "1\r\n \r\n"},
		{"chunked stops mid-size", "POST /v1.0/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1", ""},
		{"over the budget, trickle", "POST /v1.0/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n[" + strings.Repeat(" ", 200<<10), " "},
		{"other route body trickle", "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n", " "},
		{"second request trickle", full + "POST /v1.0/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n[", " "},
		{"100-continue then silence", "POST /v1.0/event HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n", ""},
	}
	// All at once, each on its own connection (t.Parallel would run only
	// GOMAXPROCS of them at a time).
	took := make([]time.Duration, len(cases))
	var wg sync.WaitGroup
	for i, c := range cases {
		wg.Go(func() {
			conn, err := net.Dial("tcp", s.Addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(15 * time.Second))
			start := time.Now()
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				if _, err := io.WriteString(conn, c.first); err != nil || c.each == "" {
					return
				}
				for {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					if _, err := io.WriteString(conn, c.each); err != nil {
						return
					}
				}
			}()
			// Read whatever the server answers until it closes the connection.
			io.Copy(io.Discard, conn)
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	for i, c := range cases {
		if took[i] > 3*readTimeout {
			t.Errorf("%s: connection open for %v, want it answered and closed within about %v", c.name, took[i].Round(time.Millisecond), readTimeout)
		}
	}
	if code, body := s.post(t, "/v1.0/event", ev); code != 204 {
		t.Errorf("after the slow clients: got %d %s, want 204", code, body)
	}
}

// TestServer_RefusedBodyNotRead: a large body refused for the in-flight
// budget gets its 503 (Retry-After: 1, a JSON detail, Connection: close),
// and the server then stops reading it and closes the connection within
// about a second, instead of reading all the client sends: under a flood,
// reading the refused bodies took the CPU the accepted ones needed.
func TestServer_RefusedBodyNotRead(t *testing.T) {
	const size = 64 << 20
	s := startServer(t, ingest.Config{MaxInflightBytes: 1 << 20, Limits: ingest.Limits{MaxBodyBytes: size}})
	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	// Write the body while the answer is read; count what got out.
	var sent int
	wrote := make(chan error, 1)
	go func() {
		_, err := fmt.Fprintf(conn, "POST /v1.0/events HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n[", size)
		chunk := []byte(strings.Repeat(" ", 64<<10))
		for err == nil && sent+len(chunk) < size {
			var n int
			n, err = conn.Write(chunk)
			sent += n
		}
		wrote <- err
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	answered := time.Now()
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !resp.Close || !strings.HasPrefix(string(b), `{"detail":"Server busy`) {
		t.Errorf("got %d Retry-After %q close %v %s, want 503, 1, Connection: close and a detail", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Close, b)
	}
	err = <-wrote
	if err == nil {
		t.Fatalf("all %d MiB of the refused body were taken: want the connection closed early", size>>20)
	}
	// What the server read (1 MiB of budget, 256 KiB of lingering) plus
	// what the two sockets' buffers hold.
	t.Logf("refused body: %d KiB sent before %v, %v after the answer", sent>>10, err, time.Since(answered).Round(time.Millisecond))
	if sent > size/2 {
		t.Errorf("%d MiB of the refused body sent before the connection was closed, want far less", sent>>20)
	}
	if since := time.Since(answered); since > 5*time.Second {
		t.Errorf("connection closed %v after the answer, want about 1 s", since)
	}
}
