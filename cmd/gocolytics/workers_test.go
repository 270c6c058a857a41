package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var workerStartedRE = regexp.MustCompile(`msg="worker started" component=supervisor worker=(\d+) pid=(\d+)`)

// workerPIDs returns the pid of every worker the supervisor has started so
// far, by worker number, latest last.
func workerPIDs(p *proc) map[int][]int {
	out := map[int][]int{}
	for _, m := range workerStartedRE.FindAllStringSubmatch(p.log(), -1) {
		w, _ := strconv.Atoi(m[1])
		pid, _ := strconv.Atoi(m[2])
		out[w] = append(out[w], pid)
	}
	return out
}

// alive says whether pid is a running process (not gone, not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// load posts events from clients goroutines until stop is closed, half of
// them on a new connection per request (so they land on every worker), and
// records each acknowledged marker.
type loadRun struct {
	mu       sync.Mutex
	acked    map[string]bool
	status   map[int]int
	wg       sync.WaitGroup
	stop     chan struct{}
	sent     atomic.Int64
	errs     int
	firstErr error
}

func startLoad(addr string, clients, perClient int) *loadRun {
	l := &loadRun{acked: map[string]bool{}, status: map[int]int{}, stop: make(chan struct{})}
	for c := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: c%2 == 0}}
			for i := 0; perClient <= 0 || i < perClient; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				m := fmt.Sprintf("c%d-%d", c, i)
				l.sent.Add(1)
				resp, err := client.Post("http://"+addr+"/v1.0/event", "", strings.NewReader(binEvent(m)))
				if err != nil {
					l.mu.Lock()
					l.errs++
					if l.firstErr == nil {
						l.firstErr = err
					}
					l.mu.Unlock()
					continue // not acknowledged
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				l.mu.Lock()
				l.status[resp.StatusCode]++
				if resp.StatusCode == 204 {
					l.acked[m] = true
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// wait waits for a load of a fixed number of requests to end.
func (l *loadRun) wait() { l.wg.Wait() }

// finish stops the load and waits for it.
func (l *loadRun) finish() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

func (l *loadRun) count(status int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status[status]
}

// checkStored fails unless every acknowledged event is stored (once:
// storedMarkers reports duplicates).
func checkStored(t *testing.T, l *loadRun, dbPath string) map[string]bool {
	t.Helper()
	stored := storedMarkers(t, dbPath)
	if len(l.acked) == 0 {
		t.Fatalf("nothing acknowledged; %d errors, the first: %v", l.errs, l.firstErr)
	}
	lost := 0
	for m := range l.acked {
		if !stored[m] {
			lost++
			if lost < 5 {
				t.Errorf("acknowledged %s is not stored", m)
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d acknowledged events lost", lost)
	}
	return stored
}

func stopBinary(t *testing.T, p *proc) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 20*time.Second); code != 0 {
		t.Errorf("exit code %d\n%s", code, p.log())
	}
}

// TestWorkers_ExactlyOnce: two workers, many concurrent clients: every
// request is answered 204 and stored exactly once.
func TestWorkers_ExactlyOnce(t *testing.T) {
	p := startBinary(t, "", "--workers", "2")
	if pids := workerPIDs(p); len(pids) != 2 {
		t.Fatalf("got workers %v, want 2\n%s", pids, p.log())
	}
	l := startLoad(p.Addr, 24, 40)
	l.wait()
	stopBinary(t, p)
	if got := l.count(204); got != 24*40 {
		t.Errorf("got %d × 204 (statuses %v), want %d", got, l.status, 24*40)
	}
	if stored := checkStored(t, l, p.DBPath); len(stored) != 24*40 {
		t.Errorf("got %d rows, want %d", len(stored), 24*40)
	}
}

// TestWorkers_KillWorker: kill -9 of one worker under load: the other keeps
// serving, no acknowledged event is lost, and the worker is replaced.
func TestWorkers_KillWorker(t *testing.T) {
	p := startBinary(t, "", "--workers", "2")
	victim := workerPIDs(p)[1][0]
	l := startLoad(p.Addr, 16, 0)
	waitFor(t, func() bool { return l.count(204) >= 200 }, "200 acknowledged before the kill")
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(workerPIDs(p)[1]) == 2 }, "worker 1 replaced")
	before := l.count(204)
	waitFor(t, func() bool { return l.count(204) >= before+200 }, "200 acknowledged after the restart")
	l.finish()
	if pids := workerPIDs(p)[1]; pids[1] == victim || !alive(pids[1]) {
		t.Errorf("worker 1: pids %v, want a new, live one", pids)
	}
	if !strings.Contains(p.log(), "worker died; restarting it") {
		t.Errorf("no log of the restart:\n%s", p.log())
	}
	stopBinary(t, p)
	checkStored(t, l, p.DBPath)
	t.Logf("acknowledged %d; statuses %v", len(l.acked), l.status)
}

// TestWorkers_KillSupervisor: kill -9 of the supervisor: every worker exits
// at once (parent-death signal), and a new server binds the port.
func TestWorkers_KillSupervisor(t *testing.T) {
	p := startBinary(t, "", "--workers", "2")
	var pids []int
	for _, ps := range workerPIDs(p) {
		pids = append(pids, ps...)
	}
	p.cmd.Process.Kill()
	p.wait(t, 5*time.Second)
	deadline := time.Now().Add(time.Second)
	for _, pid := range pids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if alive(pid) {
			t.Errorf("worker %d still running a second after the supervisor died", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	_, port, _ := net.SplitHostPort(p.Addr)
	// A single process binds without SO_REUSEPORT: it fails if any socket
	// of the old workers were left.
	q := startBinary(t, p.DBPath, "--port", port, "--workers", "1")
	if q.Addr != p.Addr {
		t.Errorf("restarted on %s, want %s", q.Addr, p.Addr)
	}
	stopBinary(t, q)
}

// TestWorkers_RateLimitExact: one client's budget is exact across workers
// and connections.
func TestWorkers_RateLimitExact(t *testing.T) {
	// Per hour, so that no token refills while the test runs.
	p := startBinary(t, "", "--workers", "2", "--rate-limit", "50/hour")
	l := startLoad(p.Addr, 20, 10)
	l.wait()
	if got, refused := l.count(204), l.count(429); got != 50 || refused != 150 {
		t.Errorf("got %d × 204 and %d × 429 (statuses %v), want 50 and 150", got, refused, l.status)
	}
	resp, err := http.Post("http://"+p.Addr+"/v1.0/events", "", strings.NewReader("["+binEvent("x")+"]"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || string(body) != `{"detail":"Rate limit exceeded: 50 per 1 hour"}` || resp.Header.Get("Retry-After") != "72" {
		t.Errorf("got %d %s Retry-After %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	stopBinary(t, p)
	checkStored(t, l, p.DBPath)
}

// waitFor polls cond for up to 20 seconds.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWorkers_PortInUse: a second server with workers does not join the
// first one's SO_REUSEPORT sockets: it is refused the port, as a single
// process would be.
func TestWorkers_PortInUse(t *testing.T) {
	p := startBinary(t, "", "--workers", "2")
	_, port, _ := net.SplitHostPort(p.Addr)
	cmd := exec.Command(buildBinary(t), "--port", port, "--workers", "2", "--api-keys", `["bin-key"]`,
		"--sqlite-file-path", filepath.Join(t.TempDir(), "other.db"), "--env-file", envFile(t, ""))
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "address already in use") {
		t.Errorf("got %v, want exit code 1 and address already in use\n%s", err, out)
	}
	stopBinary(t, p)
}
