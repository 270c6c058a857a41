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

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

// TestFault_Kill9 kills the server with SIGKILL under load, round after
// round, restarting it on the same file: every event that got a 204 is in
// the database, the database passes integrity_check, and the server starts
// again each time. 20 rounds with GOCOLYTICS_FAULT_LONG=1, 5 otherwise.
func TestFault_Kill9(t *testing.T) {
	gctest.NeedFault(t)
	rounds := 5
	if gctest.FaultLong() {
		rounds = 20
	}
	faultKill9(t, rounds)
}

// TestFault_Kill9Workers is TestFault_Kill9 with --workers 2: in each round
// one worker is killed first, then, with the load still on, the supervisor.
// 20 rounds with GOCOLYTICS_FAULT_LONG=1, 3 otherwise.
//
// The kernel sends the workers their parent-death SIGKILL when the
// supervisor's forking thread exits, which may come after the supervisor's
// end of the links is closed: a worker that runs in between answers 503,
// in doubt for the requests it had handed over and "not stored" for later
// ones. Neither is acknowledged, and every "not stored" must be true.
func TestFault_Kill9Workers(t *testing.T) {
	gctest.NeedFault(t)
	rounds := 3
	if gctest.FaultLong() {
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
	var ledgers []*gctest.Ledger
	acked := func() int {
		n := 0
		for _, l := range ledgers {
			n += l.AckedCount()
		}
		return n
	}
	var storedTotal, workerKills int
	var sent, unknown, refused int64
	for r := range rounds {
		// Every other round merges every 20 ms, so that some kills land in
		// the middle of a merge.
		merge := []string{"--merge-interval", "1s"}
		if r%2 == 1 {
			merge = []string{"--merge-interval", "20ms"}
		}
		p := gctest.Start(t, dbPath, append(merge, args...)...)
		lo := gctest.Load{Addr: p.Addr, Prefix: fmt.Sprintf("r%02d", r), Clients: 16, Batches: true}
		if len(args) > 0 {
			lo.Allowed = func(status int) bool { return status == http.StatusServiceUnavailable }
		}
		l := lo.Start()
		ledgers = append(ledgers, l)
		// Kill once the load is well under way, at a random moment.
		deadline := time.Now().Add(10 * time.Second)
		for l.AckedCount() < 200 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		if kids := children(p.PID()); len(args) > 0 && len(kids) > 0 {
			syscall.Kill(kids[rand.IntN(len(kids))], syscall.SIGKILL)
			workerKills++
			before := l.AckedCount()
			for l.AckedCount() < before+200 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		}
		p.Kill(t)
		l.Stop()
		sent += l.Sent()
		unknown += l.Unknown()
		refused += l.Failed()

		integrity, stored := gctest.Check(t, dbPath)
		if integrity != "ok" {
			t.Fatalf("round %d: integrity_check: %s", r, integrity)
		}
		// Every round's acknowledged events, this one's and all before.
		for _, l := range ledgers {
			if lost := l.Lost(stored); len(lost) > 0 {
				t.Fatalf("round %d: %d acknowledged events lost, the first: %v", r, len(lost), lost[:min(5, len(lost))])
			}
			if bad := l.Bad(); len(bad) > 0 {
				t.Fatalf("round %d: unexpected answers: %v", r, bad)
			}
			if wrong := l.FalselyRefused(stored); len(wrong) > 0 {
				t.Fatalf("round %d: %d events answered as not stored are stored, the first: %v", r, len(wrong), wrong[:min(5, len(wrong))])
			}
		}
		storedTotal = len(stored)
	}
	if acked() == 0 {
		t.Fatal("nothing was acknowledged")
	}
	// A clean start, a write, and a clean stop on the file that was killed
	// under load again and again.
	p := gctest.Start(t, dbPath, args...)
	if code, body := gctest.Post(t, nil, p.URL("/v1.0/event"), gctest.NewEvent("after-the-rounds").JSON()); code != 204 {
		t.Fatalf("after the rounds: got %d %s, want 204", code, body)
	}
	p.Stop(t)
	// The start merged what the last kill left staged, the stop what it
	// staged itself: every acknowledged event is in event now, exactly once
	// (Check fails on a duplicate).
	if n := gctest.Staged(t, dbPath); n != 0 {
		t.Errorf("after a clean stop %d events are still staged, want 0", n)
	}
	integrity, stored := gctest.Check(t, dbPath)
	for _, l := range ledgers {
		if lost := l.Lost(stored); integrity != "ok" || len(lost) > 0 {
			t.Fatalf("after the rounds: integrity_check %s; %d acknowledged events not in event", integrity, len(lost))
		}
	}
	t.Logf("kill -9 %v: %d rounds (%d workers killed too), %d events sent, %d acknowledged, %d stored (%d committed but unanswered), 0 lost; %d events of requests cut off, %d answered 503",
		args, rounds, workerKills, sent, acked(), storedTotal, storedTotal-acked(), unknown, refused)
}

// TestFault_SIGTERMInFlight: requests that are waiting for their commit
// when SIGTERM arrives are all answered 204 and stored, and the server
// exits 0 within the shutdown timeout. Another process holds the write
// lock, so that the requests are certainly in flight at the signal.
func TestFault_SIGTERMInFlight(t *testing.T) {
	gctest.NeedFault(t)
	p := gctest.Start(t, "", "--sqlite-busy-timeout", "20s", "--shutdown-timeout", "20s")
	holder := shardtest.HoldLock(t, p.DBPath)

	const n = 32
	var wg sync.WaitGroup
	codes := make([]int, n)
	errs := make([]error, n)
	client := &http.Client{Timeout: 30 * time.Second}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Post(p.URL("/v1.0/event"), "", strings.NewReader(gctest.NewEvent(fmt.Sprintf("inflight-%d", i)).JSON()))
			if err != nil {
				errs[i] = err
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	gctest.WaitMetric(t, p.Addr, "gocolytics_queued_events", n)
	p.Signal(t, syscall.SIGTERM)
	// The server is draining; let the other process go.
	time.Sleep(200 * time.Millisecond)
	holder.Release(t)
	code := p.Wait(t, 25*time.Second)
	wg.Wait()
	if code != 0 {
		t.Errorf("exit code %d\n%s", code, p.Log())
	}
	_, stored := gctest.Check(t, p.DBPath)
	for i := range n {
		if errs[i] != nil || codes[i] != 204 {
			t.Errorf("request %d: got %d, %v; want 204", i, codes[i], errs[i])
		}
		if m := fmt.Sprintf("inflight-%d", i); codes[i] == 204 && !stored[m] {
			t.Errorf("acknowledged %s is not stored", m)
		}
	}
}
