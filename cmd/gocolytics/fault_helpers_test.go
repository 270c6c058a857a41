package main

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faultLong reports whether the long fault suite is switched on
// (GOCOLYTICS_FAULT_LONG=1): more rounds, more connections, bigger floods.
func faultLong() bool { return os.Getenv("GOCOLYTICS_FAULT_LONG") == "1" }

// faultEvent is one event whose marker is its event_type and, as JSON, its
// value, so that a stored row can be matched to the request that sent it.
func faultEvent(marker string) string {
	return fmt.Sprintf(`{"event_type":%q,"application":"fault","version":"1","platform":"p","user_id":"u","session_id":"s","value":{"m":%q},"api_key":"bin-key"}`, marker, marker)
}

// faultBatch is a batch of faultEvents.
func faultBatch(markers []string) string {
	parts := make([]string, len(markers))
	for i, m := range markers {
		parts[i] = faultEvent(m)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// ledger counts what a load sent and what came back acknowledged.
type ledger struct {
	mu      sync.Mutex
	acked   map[string]bool
	sent    atomic.Int64 // events
	failed  atomic.Int64 // events of requests answered neither 204 nor an error
	unknown atomic.Int64 // events of requests with no answer (connection lost)
	bad     []string     // unexpected answers, for the test to report
}

func newLedger() *ledger { return &ledger{acked: map[string]bool{}} }

func (l *ledger) ack(markers []string) {
	l.mu.Lock()
	for _, m := range markers {
		l.acked[m] = true
	}
	l.mu.Unlock()
}

func (l *ledger) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// load posts unique events to addr from conns goroutines, singles and
// batches mixed, until stop is closed. allowed says which non-204 statuses
// are expected; any other is recorded in l.bad.
func load(addr, prefix string, conns int, l *ledger, stop <-chan struct{}, allowed func(int) bool) *sync.WaitGroup {
	var wg sync.WaitGroup
	tr := &http.Transport{MaxIdleConnsPerHost: conns, DisableCompression: true}
	client := &http.Client{Timeout: 20 * time.Second, Transport: tr}
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := 1
				if i%3 == 2 {
					n = 1 + (i*7+c)%25
				}
				markers := make([]string, n)
				for k := range markers {
					markers[k] = fmt.Sprintf("%s-c%d-%d-%d", prefix, c, i, k)
				}
				path, body := "/v1.0/event", faultEvent(markers[0])
				if n > 1 || i%6 == 5 {
					path, body = "/v1.0/events", faultBatch(markers)
				}
				l.sent.Add(int64(n))
				resp, err := client.Post("http://"+addr+path, "", strings.NewReader(body))
				if err != nil {
					l.unknown.Add(int64(n))
					// The server is gone or going: wait for stop rather
					// than spin.
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode == 204:
					l.ack(markers)
				default:
					l.failed.Add(int64(n))
					if allowed == nil || !allowed(resp.StatusCode) {
						l.mu.Lock()
						if len(l.bad) < 10 {
							l.bad = append(l.bad, fmt.Sprintf("%d %s", resp.StatusCode, b))
						}
						l.mu.Unlock()
					}
				}
			}
		}()
	}
	return &wg
}

// dbCheck opens the database as a user would (read-write, so that a hot
// WAL left by a crash is recovered), runs PRAGMA integrity_check and returns
// its answer and every stored marker. A marker stored twice, or a row whose
// value does not carry its marker, fails the test.
func dbCheck(t *testing.T, path string) (integrity string, stored map[string]bool) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&integrity); err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	rows, err := db.Query("SELECT event_type, value FROM event")
	if err != nil {
		t.Fatalf("read rows: %v", err)
	}
	defer rows.Close()
	stored = map[string]bool{}
	for rows.Next() {
		var m, v string
		if err := rows.Scan(&m, &v); err != nil {
			t.Fatal(err)
		}
		var val struct{ M string }
		if json.Unmarshal([]byte(v), &val) != nil || val.M != m {
			t.Errorf("row %s has value %s", m, v)
		}
		if stored[m] {
			t.Errorf("%s stored twice", m)
		}
		stored[m] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return integrity, stored
}

// procStatusKiB reads a field such as VmHWM or VmRSS, in KiB, from
// /proc/PID/status.
func procStatusKiB(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return -1
}

// openFDs counts the open file descriptors of the process.
func openFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// post sends one body and returns the status and response body.
func post(t *testing.T, client *http.Client, addr, path, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
