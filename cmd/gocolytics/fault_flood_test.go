package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
)

// TestFault_Floods: hostile bodies get a clear 4xx, the server's memory
// stays bounded, and it serves a normal client afterwards.
func TestFault_Floods(t *testing.T) {
	gctest.NeedFault(t)
	p := gctest.Start(t, "")
	pid := p.PID()
	client := &http.Client{Timeout: 60 * time.Second}
	rng := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 1<<20)
	for i := range garbage {
		garbage[i] = byte(rng.UintN(256))
	}
	mb := strings.Repeat("x", 1<<20)
	small := strings.Repeat(`{},`, 99_999) + `{}`
	flood := make([]string, 100_000)
	for i := range flood {
		flood[i] = fmt.Sprintf("flood-%d", i)
	}
	full := gctest.MarkedBatch(flood...)
	// with returns the event marked x with one field changed.
	with := func(change func(*gctest.Event)) string {
		e := gctest.NewEvent("x")
		change(&e)
		return e.JSON()
	}

	tests := []struct {
		name, path, body string
		header           []string
		want             int
		detail           string
	}{
		{"1 MB of garbage", "/v1.0/event", string(garbage), nil, 422, `"loc":["body",0]`},
		{"1 MB of garbage, batch", "/v1.0/events", string(garbage), nil, 422, `"loc":["body",0]`},
		{"1 MB of garbage as gzip", "/v1.0/events", string(garbage), []string{"Content-Encoding", "gzip"}, 400, "not valid gzip"},
		{"10,000-deep nested value", "/v1.0/event", with(func(e *gctest.Event) { e.Value = strings.Repeat(`{"a":`, 10_000) + "1" + strings.Repeat("}", 10_000) }), nil, 422, "Nested deeper than 64"},
		{"10,000-deep nested arrays", "/v1.0/events", strings.Repeat("[", 10_000) + strings.Repeat("]", 10_000), nil, 422, "Nested deeper than 64"},
		{"100,000 empty elements", "/v1.0/events", "[" + small + "]", nil, 413, "10000"},
		{"100,000 events (over the body limit)", "/v1.0/events", full, nil, 413, "too large"},
		{"megabyte event_type", "/v1.0/event", with(func(e *gctest.Event) { e.EventType = mb }), nil, 422, "1024"},
		{"megabyte string in value", "/v1.0/event", with(func(e *gctest.Event) { e.Value = `{"m":"` + mb + `"}` }), nil, 422, "65536"},
		{"megabyte key in value", "/v1.0/event", with(func(e *gctest.Event) { e.Value = `{"` + mb + `":1}` }), nil, 422, "65536"},
		{"megabyte api_key", "/v1.0/event", with(func(e *gctest.Event) { e.APIKey = mb }), nil, 401, "API Key"},
		{"megabyte unknown field", "/v1.0/event", strings.Replace(gctest.NewEvent("x").JSON(), `"api_key"`, `"junk":"`+mb+`","api_key"`, 1), nil, 204, ""},
		{"megabyte number", "/v1.0/event", with(func(e *gctest.Event) { e.Value = `{"n":1` + strings.Repeat("0", 1<<20) + `}` }), nil, 422, "65536"},
		{"unterminated megabyte string", "/v1.0/event", `{"event_type":"` + mb, nil, 422, "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := rawPost(t, p.Addr, tt.path, tt.body, tt.header...)
			if code != tt.want {
				t.Fatalf("got %d %.300s, want %d", code, body, tt.want)
			}
			if tt.want != 204 && (!strings.HasPrefix(body, `{"detail":`) || !strings.Contains(body, tt.detail)) {
				t.Errorf("body %.300s does not hold a detail with %q", body, tt.detail)
			}
		})
	}

	// The largest batch accepted: MAX_BATCH_EVENTS events, all stored.
	markers := make([]string, 10_000)
	for i := range markers {
		markers[i] = fmt.Sprintf("max-batch-%d", i)
	}
	if code, body := gctest.Post(t, client, p.URL("/v1.0/events"), gctest.MarkedBatch(markers...)); code != 204 {
		t.Errorf("a batch of 10,000 events: got %d %.300s, want 204", code, body)
	}

	// A header flood and a body larger than it says: fasthttp answers them.
	if c, err := net.Dial("tcp", p.Addr); err == nil {
		fmt.Fprintf(c, "POST /v1.0/event HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("h", 1<<20))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		c.Close()
		if !bytes.HasPrefix(b, []byte("HTTP/1.1 431")) {
			t.Errorf("1 MB header: got %.900q, want a 431", b)
		}
	}

	// A broken request line is a 400 that does not quote the request (it
	// may carry credentials).
	if c, err := net.Dial("tcp", p.Addr); err == nil {
		fmt.Fprintf(c, "POST /v1.0/event HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret-abc\r\nBroken header line\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		c.Close()
		if !bytes.HasPrefix(b, []byte("HTTP/1.1 400")) || bytes.Contains(b, []byte("secret-abc")) {
			t.Errorf("broken header: got %.900q, want a 400 that does not quote the request", b)
		}
	}
	if strings.Contains(p.Log(), "secret-abc") {
		t.Errorf("the log quotes a request's credentials")
	}

	// Many floods at once: 16 clients each sending bodies just under the
	// 8 MiB limit. Those that do not fit in MAX_INFLIGHT_BYTES (64 MiB, a
	// body charged twice: raw and decoded) get 503 with Retry-After, and
	// the server closes the connection without reading the rest of the body
	// (ingest's refuseRest): a client still writing it may see the reset
	// before it reads the 503 (Go's client does, now and then, on a loaded
	// machine), which counts as refused here.
	big := strings.Repeat(" ", 8<<20-100) + "[]"
	var wg sync.WaitGroup
	codes := make(chan int, 64)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 4 {
				resp, err := client.Post(p.URL("/v1.0/events"), "", strings.NewReader(big))
				if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					t.Logf("8 MiB of blanks: refused, the connection closed before the answer was read: %v", err)
					codes <- 503
					continue
				}
				if err != nil {
					codes <- 0
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				codes <- resp.StatusCode
			}
		}()
	}
	wg.Wait()
	close(codes)
	accepted := 0
	for c := range codes {
		if c == 204 {
			accepted++
		} else if c != 503 {
			t.Errorf("8 MiB of blanks around an empty batch: got %d, want 204 or 503", c)
			break
		}
	}
	if accepted == 0 {
		t.Errorf("8 MiB of blanks around an empty batch: none accepted, want some 204")
	}

	if code, body := gctest.Post(t, client, p.URL("/v1.0/event"), gctest.NewEvent("after-the-floods").JSON()); code != 204 {
		t.Fatalf("after the floods: got %d %s, want 204", code, body)
	}
	_, stored := gctest.Check(t, p.DBPath)
	if !stored["after-the-floods"] || !stored["max-batch-9999"] || len(stored) != 10_002 {
		t.Errorf("stored %d rows, want the 10,002 accepted events", len(stored))
	}
	hwm := procStatusKiB(pid, "VmHWM")
	t.Logf("floods: server VmHWM %d KiB, VmRSS %d KiB after", hwm, procStatusKiB(pid, "VmRSS"))
	// Generous: 16 bodies of 8 MiB in flight, each held once or twice.
	if hwm > 1<<20 {
		t.Errorf("server VmHWM %d KiB, over 1 GiB", hwm)
	}
}

// rawPost sends a request on a new connection while reading the answer, so
// that an answer the server sends before it has read the whole body (a 413
// on Content-Length) is seen rather than a broken pipe.
func rawPost(t *testing.T, addr, path, body string, header ...string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	var h strings.Builder
	fmt.Fprintf(&h, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n", path, len(body))
	for i := 0; i+1 < len(header); i += 2 {
		fmt.Fprintf(&h, "%s: %s\r\n", header[i], header[i+1])
	}
	h.WriteString("\r\n")
	go func() {
		// An error here is the server closing early; the answer says why.
		c.Write([]byte(h.String()))
		c.Write([]byte(body))
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
