package ingest_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
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
