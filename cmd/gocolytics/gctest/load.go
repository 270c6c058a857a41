package gctest

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Load describes a load: Clients goroutines posting NewEvents, each with a
// marker of its own (Prefix-cCLIENT-REQUEST-INDEX), to the server at Addr.
type Load struct {
	Addr     string
	Prefix   string // of every marker; "load" when empty
	Clients  int
	Requests int // per client; 0 posts until Stop
	// Batches mixes batches of 1 to 25 events on /v1.0/events (every
	// third request, and every sixth one of one event) into single events
	// on /v1.0/event; without it every request is one event.
	Batches bool
	// NewConns makes every other client open a new connection per
	// request, so that requests land on every worker.
	NewConns bool
	APIKey   string                // Key when empty
	Allowed  func(status int) bool // statuses besides 204 a test expects; any other is kept in Bad
}

// InDoubt is in the detail of a 503 whose events may have been stored: a
// worker lost the writer after handing them over.
const InDoubt = "the events may have been stored"

// Ledger is what a load sent and what came back: which events were
// acknowledged (204) and which refused (any other answer but one in
// doubt), by marker, and how many were not answered.
type Ledger struct {
	mu       sync.Mutex
	acked    map[string]bool
	refused  map[string]bool
	status   map[int]int // requests by status
	bad      []string
	firstErr error

	sent    atomic.Int64 // events
	failed  atomic.Int64 // events of requests answered, but not 204
	unknown atomic.Int64 // events of requests with no answer (connection lost)

	stop chan struct{}
	wg   sync.WaitGroup
}

// Start starts the load and returns its ledger.
func (lo Load) Start() *Ledger {
	if lo.Prefix == "" {
		lo.Prefix = "load"
	}
	if lo.APIKey == "" {
		lo.APIKey = Key
	}
	l := &Ledger{acked: map[string]bool{}, refused: map[string]bool{}, status: map[int]int{}, stop: make(chan struct{})}
	for c := range lo.Clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tr := &http.Transport{DisableKeepAlives: lo.NewConns && c%2 == 0, DisableCompression: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Timeout: 20 * time.Second, Transport: tr}
			for i := 0; lo.Requests <= 0 || i < lo.Requests; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				n := 1
				if lo.Batches && i%3 == 2 {
					n = 1 + (i*7+c)%25
				}
				markers := make([]string, n)
				events := make([]Event, n)
				for k := range markers {
					markers[k] = fmt.Sprintf("%s-c%d-%d-%d", lo.Prefix, c, i, k)
					events[k] = NewEvent(markers[k]).WithKey(lo.APIKey)
				}
				path, body := "/v1.0/event", events[0].JSON()
				if n > 1 || (lo.Batches && i%6 == 5) {
					path, body = "/v1.0/events", Batch(events...)
				}
				l.sent.Add(int64(n))
				resp, err := client.Post("http://"+lo.Addr+path, "", strings.NewReader(body))
				if err != nil {
					l.unknown.Add(int64(n))
					l.mu.Lock()
					if l.firstErr == nil {
						l.firstErr = err
					}
					l.mu.Unlock()
					// The server is gone or going: wait for stop rather
					// than spin.
					select {
					case <-l.stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				l.mu.Lock()
				l.status[resp.StatusCode]++
				if resp.StatusCode == http.StatusNoContent {
					for _, m := range markers {
						l.acked[m] = true
					}
				} else {
					l.failed.Add(int64(n))
					if !strings.Contains(string(b), InDoubt) {
						for _, m := range markers {
							l.refused[m] = true
						}
					}
					if (lo.Allowed == nil || !lo.Allowed(resp.StatusCode)) && len(l.bad) < 10 {
						l.bad = append(l.bad, fmt.Sprintf("%d %s", resp.StatusCode, b))
					}
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// Wait waits for a load of a fixed number of requests to end.
func (l *Ledger) Wait() { l.wg.Wait() }

// Stop stops the load and waits for its requests under way.
func (l *Ledger) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// Count is the number of requests answered with status.
func (l *Ledger) Count(status int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status[status]
}

// Statuses is the number of requests by status, for messages.
func (l *Ledger) Statuses() map[int]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[int]int, len(l.status))
	for k, v := range l.status {
		out[k] = v
	}
	return out
}

// AckedCount is the number of events acknowledged.
func (l *Ledger) AckedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// Acked reports whether the event with marker m was acknowledged.
func (l *Ledger) Acked(m string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked[m]
}

// Sent is the number of events sent.
func (l *Ledger) Sent() int64 { return l.sent.Load() }

// Failed is the number of events in requests answered other than 204.
func (l *Ledger) Failed() int64 { return l.failed.Load() }

// Unknown is the number of events in requests that got no answer.
func (l *Ledger) Unknown() int64 { return l.unknown.Load() }

// Bad is the first few unexpected answers ("STATUS BODY").
func (l *Ledger) Bad() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.bad)
}

// Err is the first request that got no answer, nil if none.
func (l *Ledger) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firstErr
}

// Lost is every acknowledged event missing from stored, sorted.
func (l *Ledger) Lost(stored map[string]bool) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var lost []string
	for m := range l.acked {
		if !stored[m] {
			lost = append(lost, m)
		}
	}
	slices.Sort(lost)
	return lost
}

// FalselyRefused is every event answered as not stored (an answer other
// than 204, not in doubt) that stored holds, sorted: the client was told
// to send it again, which would store it twice.
func (l *Ledger) FalselyRefused(stored map[string]bool) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wrong []string
	for m := range l.refused {
		if stored[m] {
			wrong = append(wrong, m)
		}
	}
	slices.Sort(wrong)
	return wrong
}

// CheckStored fails the test unless something was acknowledged and every
// acknowledged event is stored in the database at path, once; it returns
// what is stored.
func (l *Ledger) CheckStored(tb testing.TB, path string) map[string]bool {
	tb.Helper()
	if l.AckedCount() == 0 {
		tb.Fatalf("nothing acknowledged; %d events got no answer, the first: %v; statuses %v", l.Unknown(), l.Err(), l.Statuses())
	}
	stored := Stored(tb, path)
	if lost := l.Lost(stored); len(lost) > 0 {
		tb.Errorf("%d acknowledged events lost, the first: %v", len(lost), lost[:min(5, len(lost))])
	}
	return stored
}
