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
	"syscall"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
)

var workerStartedRE = regexp.MustCompile(`msg="worker started" component=supervisor worker=(\d+) pid=(\d+)`)

// workerPIDs returns the pid of every worker the supervisor has started so
// far, by worker number, latest last.
func workerPIDs(p *gctest.Server) map[int][]int {
	out := map[int][]int{}
	for _, m := range workerStartedRE.FindAllStringSubmatch(p.Log(), -1) {
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

// TestWorkers_ExactlyOnce: two workers, many concurrent clients: every
// request is answered 204 and stored exactly once.
func TestWorkers_ExactlyOnce(t *testing.T) {
	t.Parallel()
	p := gctest.Start(t, "", "--workers", "2")
	if pids := workerPIDs(p); len(pids) != 2 {
		t.Fatalf("got workers %v, want 2\n%s", pids, p.Log())
	}
	l := gctest.Load{Addr: p.Addr, Clients: 24, Requests: 40, NewConns: true}.Start()
	l.Wait()
	p.Stop(t)
	if got := l.Count(204); got != 24*40 {
		t.Errorf("got %d × 204 (statuses %v), want %d", got, l.Statuses(), 24*40)
	}
	if stored := l.CheckStored(t, p.DBPath); len(stored) != 24*40 {
		t.Errorf("got %d rows, want %d", len(stored), 24*40)
	}
}

// TestWorkers_KillWorker: kill -9 of one worker under load: the other keeps
// serving, no acknowledged event is lost, and the worker is replaced.
func TestWorkers_KillWorker(t *testing.T) {
	t.Parallel()
	p := gctest.Start(t, "", "--workers", "2")
	victim := workerPIDs(p)[1][0]
	l := gctest.Load{Addr: p.Addr, Clients: 16, NewConns: true}.Start()
	gctest.WaitFor(t, func() bool { return l.Count(204) >= 200 }, "200 acknowledged before the kill")
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	gctest.WaitFor(t, func() bool { return len(workerPIDs(p)[1]) == 2 }, "worker 1 replaced")
	before := l.Count(204)
	gctest.WaitFor(t, func() bool { return l.Count(204) >= before+200 }, "200 acknowledged after the restart")
	l.Stop()
	if pids := workerPIDs(p)[1]; pids[1] == victim || !alive(pids[1]) {
		t.Errorf("worker 1: pids %v, want a new, live one", pids)
	}
	if !strings.Contains(p.Log(), "worker died; restarting it") {
		t.Errorf("no log of the restart:\n%s", p.Log())
	}
	p.Stop(t)
	l.CheckStored(t, p.DBPath)
	t.Logf("acknowledged %d; statuses %v", l.AckedCount(), l.Statuses())
}

// TestWorkers_KillSupervisor: kill -9 of the supervisor: every worker exits
// at once (parent-death signal), and a new server binds the port.
func TestWorkers_KillSupervisor(t *testing.T) {
	t.Parallel()
	p := gctest.Start(t, "", "--workers", "2")
	var pids []int
	for _, ps := range workerPIDs(p) {
		pids = append(pids, ps...)
	}
	p.Signal(t, syscall.SIGKILL)
	p.Wait(t, 5*time.Second)
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
	q := gctest.Start(t, p.DBPath, "--port", port, "--workers", "1")
	if q.Addr != p.Addr {
		t.Errorf("restarted on %s, want %s", q.Addr, p.Addr)
	}
	q.Stop(t)
}

// TestWorkers_RateLimitExact: one client's budget is exact across workers
// and connections.
func TestWorkers_RateLimitExact(t *testing.T) {
	t.Parallel()
	// Per hour, so that no token refills while the test runs.
	p := gctest.Start(t, "", "--workers", "2", "--rate-limit", "50/hour")
	l := gctest.Load{Addr: p.Addr, Clients: 20, Requests: 10, NewConns: true}.Start()
	l.Wait()
	if got, refused := l.Count(204), l.Count(429); got != 50 || refused != 150 {
		t.Errorf("got %d × 204 and %d × 429 (statuses %v), want 50 and 150", got, refused, l.Statuses())
	}
	req, _ := http.NewRequest("POST", p.URL("/v1.0/events"), strings.NewReader(gctest.MarkedBatch("x")))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || string(body) != `{"detail":"Rate limit exceeded: 50 per 1 hour"}` || resp.Header.Get("Retry-After") != "72" {
		t.Errorf("got %d %s Retry-After %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	p.Stop(t)
	l.CheckStored(t, p.DBPath)
}

// TestWorkers_PortInUse: a second server with workers does not join the
// first one's SO_REUSEPORT sockets: it is refused the port, as a single
// process would be.
func TestWorkers_PortInUse(t *testing.T) {
	t.Parallel()
	p := gctest.Start(t, "", "--workers", "2")
	_, port, _ := net.SplitHostPort(p.Addr)
	cmd := exec.Command(gctest.Binary(t), "--port", port, "--workers", "2", "--api-keys", `["`+gctest.Key+`"]`,
		"--sqlite-file-path", filepath.Join(t.TempDir(), "other.db"), "--env-file", gctest.EnvFile(t, ""))
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "address already in use") {
		t.Errorf("got %v, want exit code 1 and address already in use\n%s", err, out)
	}
	p.Stop(t)
}
