package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestFault_Kill9 kills the server with SIGKILL under load, round after
// round, restarting it on the same file: every event that got a 204 is in
// the database, the database passes integrity_check, and the server starts
// again each time. 20 rounds with GOCOLYTICS_FAULT_LONG=1, 5 otherwise.
func TestFault_Kill9(t *testing.T) {
	rounds := 5
	if faultLong() {
		rounds = 20
	}
	faultKill9(t, rounds)
}

// TestFault_Kill9Workers is TestFault_Kill9 with --workers 2: in each round
// one worker is killed first, then, with the load still on, the supervisor.
// 20 rounds with GOCOLYTICS_FAULT_LONG=1, 3 otherwise.
func TestFault_Kill9Workers(t *testing.T) {
	rounds := 3
	if faultLong() {
		rounds = 20
	}
	faultKill9(t, rounds, "--workers", "2")
}

// children returns the PIDs of the process's child processes (of any of
// its threads: Go forks from whichever thread runs the goroutine).
func children(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

func faultKill9(t *testing.T, rounds int, args ...string) {
	dbPath := t.TempDir() + "/events.db"
	l := newLedger()
	var storedTotal, workerKills int
	for r := range rounds {
		p := startBinary(t, dbPath, args...)
		stop := make(chan struct{})
		wg := load(p.Addr, fmt.Sprintf("r%02d", r), 16, l, stop, nil)
		// Kill once the load is well under way, at a random moment.
		before := l.ackedCount()
		deadline := time.Now().Add(10 * time.Second)
		for l.ackedCount() < before+200 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		if kids := children(p.cmd.Process.Pid); len(args) > 0 && len(kids) > 0 {
			syscall.Kill(kids[rand.IntN(len(kids))], syscall.SIGKILL)
			workerKills++
			before := l.ackedCount()
			for l.ackedCount() < before+200 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p.wait(t, 10*time.Second)
		close(stop)
		wg.Wait()

		integrity, stored := dbCheck(t, dbPath)
		if integrity != "ok" {
			t.Fatalf("round %d: integrity_check: %s", r, integrity)
		}
		l.mu.Lock()
		lost := 0
		for m := range l.acked {
			if !stored[m] {
				lost++
				if lost <= 5 {
					t.Errorf("round %d: acknowledged %s is not stored", r, m)
				}
			}
		}
		bad := l.bad
		l.mu.Unlock()
		if lost > 0 {
			t.Fatalf("round %d: %d acknowledged events lost", r, lost)
		}
		if len(bad) > 0 {
			t.Fatalf("round %d: unexpected answers: %v", r, bad)
		}
		storedTotal = len(stored)
	}
	if l.ackedCount() == 0 {
		t.Fatal("nothing was acknowledged")
	}
	// A clean start, a write, and a clean stop on the file that was killed
	// under load again and again.
	p := startBinary(t, dbPath, args...)
	if code, body := post(t, http.DefaultClient, p.Addr, "/v1.0/event", faultEvent("after-the-rounds")); code != 204 {
		t.Fatalf("after the rounds: got %d %s, want 204", code, body)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d after the rounds\n%s", code, p.log())
	}
	t.Logf("kill -9 %v: %d rounds (%d workers killed too), %d events sent, %d acknowledged, %d stored (%d committed but unanswered), 0 lost; %d events of requests cut off",
		args, rounds, workerKills, l.sent.Load(), l.ackedCount(), storedTotal, storedTotal-l.ackedCount(), l.unknown.Load())
}

// TestFault_SIGTERMInFlight: requests that are waiting for their commit
// when SIGTERM arrives are all answered 204 and stored, and the server
// exits 0 within the shutdown timeout. Another process holds the write
// lock, so that the requests are certainly in flight at the signal.
func TestFault_SIGTERMInFlight(t *testing.T) {
	sqlite := needSQLite3(t)
	p := startBinary(t, "", "--sqlite-busy-timeout", "20s", "--shutdown-timeout", "20s")
	holder := holdLock(t, sqlite, p.DBPath)

	const n = 32
	var wg sync.WaitGroup
	codes := make([]int, n)
	errs := make([]error, n)
	client := &http.Client{Timeout: 30 * time.Second}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Post("http://"+p.Addr+"/v1.0/event", "", strings.NewReader(faultEvent(fmt.Sprintf("inflight-%d", i))))
			if err != nil {
				errs[i] = err
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	waitMetric(t, p.Addr, "gocolytics_queued_events", n)
	p.cmd.Process.Signal(syscall.SIGTERM)
	// The server is draining; let the other process go.
	time.Sleep(200 * time.Millisecond)
	holder.release(t)
	code := p.wait(t, 25*time.Second)
	wg.Wait()
	if code != 0 {
		t.Errorf("exit code %d\n%s", code, p.log())
	}
	_, stored := dbCheck(t, p.DBPath)
	for i := range n {
		if errs[i] != nil || codes[i] != 204 {
			t.Errorf("request %d: got %d, %v; want 204", i, codes[i], errs[i])
		}
		if m := fmt.Sprintf("inflight-%d", i); codes[i] == 204 && !stored[m] {
			t.Errorf("acknowledged %s is not stored", m)
		}
	}
}
