package gctest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// client is Post's and Get's when the caller gives none: generous, for
// bodies of megabytes on a busy machine.
var client = &http.Client{Timeout: 60 * time.Second}

// Post sends body to url with the header pairs given (name, value, ...) and
// returns the status and the response body; a request that gets no answer
// fails the test. A nil c is a client with a 60 s timeout.
func Post(tb testing.TB, c *http.Client, url, body string, header ...string) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return Do(tb, c, req)
}

// Get fetches url and returns the status and the body; no answer fails the
// test.
func Get(tb testing.TB, url string) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return Do(tb, nil, req)
}

// Do sends req with c (nil: a client with a 60 s timeout) and returns the
// status and the response body; no answer fails the test.
func Do(tb testing.TB, c *http.Client, req *http.Request) (int, string) {
	tb.Helper()
	if c == nil {
		c = client
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Metrics reads every sample of http://addr/metrics, by series name (with
// its labels), over a connection of its own, so that with workers each
// scrape may land on another one. Anything but a 200 with well-formed lines
// fails the test.
func Metrics(tb testing.TB, addr string) map[string]float64 {
	tb.Helper()
	out, err := metrics(addr)
	if err != nil {
		tb.Fatalf("scrape %s: %v", addr, err)
	}
	return out
}

// Metric reads one unlabelled metric from http://addr/metrics; -1 if it is
// absent or the server does not answer.
func Metric(addr, name string) float64 {
	m, err := metrics(addr)
	if v, ok := m[name]; ok && err == nil {
		return v
	}
	return -1
}

func metrics(addr string) (map[string]float64, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("bad line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("bad line %q", line)
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// WaitMetric waits up to 20 s until the metric reaches at least want.
func WaitMetric(tb testing.TB, addr, name string, want float64) {
	tb.Helper()
	var v float64
	WaitFor(tb, func() bool { v = Metric(addr, name); return v >= want }, name+" to reach "+strconv.FormatFloat(want, 'g', -1, 64))
}

// WaitFor polls cond every 10 ms for up to 20 s, and fails the test,
// naming what, if it never holds.
func WaitFor(tb testing.TB, cond func() bool, what string) {
	tb.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after 20s waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FreePort returns a port of 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// EnvFile writes text to a new .env file and returns its path. Tests pass
// one (empty at least) so that no .env of the developer's is read.
func EnvFile(tb testing.TB, text string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), ".env")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}
