package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// needSQLite3 returns the path of the sqlite3 command-line program, or skips.
func needSQLite3(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("sqlite3")
	if err != nil {
		t.Skip("sqlite3 is not installed (Debian package sqlite3; .ci/run installs it)")
	}
	return p
}

// lockHolder is a sqlite3 process inside BEGIN EXCLUSIVE on the database.
type lockHolder struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	once sync.Once
}

// holdLock starts sqlite3 on path and returns once it holds the write lock
// (BEGIN EXCLUSIVE). The lock is let go by release, or when the test ends.
func holdLock(t *testing.T, sqlite, path string) *lockHolder {
	t.Helper()
	cmd := exec.Command(sqlite, path)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &lockHolder{cmd: cmd, in: in}
	t.Cleanup(func() { h.release(t) })
	fmt.Fprintln(in, ".timeout 10000")
	fmt.Fprintln(in, "BEGIN EXCLUSIVE; SELECT 'locked';")
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "locked" {
		t.Fatalf("sqlite3 did not take the lock: %q, %v", line, err)
	}
	go io.Copy(io.Discard, out)
	return h
}

// release commits the holder's empty transaction and waits for it to exit.
func (h *lockHolder) release(t *testing.T) {
	h.once.Do(func() {
		fmt.Fprintln(h.in, "COMMIT;")
		h.in.Close()
		done := make(chan error, 1)
		go func() { done <- h.cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			h.cmd.Process.Kill()
			t.Errorf("sqlite3 did not exit")
		}
	})
}

// metricValue reads one unlabelled metric from /metrics; -1 if absent.
func metricValue(addr, name string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// waitMetric waits until the metric reaches at least want.
func waitMetric(t *testing.T, addr, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		v := metricValue(addr, name)
		if v >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %v, want %v or more", name, v, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFault_LockedDatabase: while another process holds the write lock for
// 2 s, requests wait and then succeed (busy timeout 5 s); held past the busy
// timeout, they get 503 with a clear detail, never 500; once it lets go,
// writes succeed again without a restart; nothing acknowledged is lost, and
// nothing answered 503 is stored.
func TestFault_LockedDatabase(t *testing.T) {
	sqlite := needSQLite3(t)
	p := startBinary(t, "", "--sqlite-busy-timeout", "5s")
	client := &http.Client{Timeout: 30 * time.Second}
	if code, body := post(t, client, p.Addr, "/v1.0/event", faultEvent("before")); code != 204 {
		t.Fatalf("before: got %d %s", code, body)
	}

	// Held for 2 s, within the 5 s busy timeout: every request waits and
	// gets its 204.
	l := newLedger()
	stop := make(chan struct{})
	h := holdLock(t, sqlite, p.DBPath)
	wg := load(p.Addr, "short", 8, l, stop, nil)
	time.Sleep(2 * time.Second)
	h.release(t)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if len(l.bad) > 0 || l.failed.Load() > 0 || l.unknown.Load() > 0 {
		t.Fatalf("lock held 2 s: %d events failed, %d unanswered: %v", l.failed.Load(), l.unknown.Load(), l.bad)
	}
	if l.ackedCount() == 0 {
		t.Fatal("nothing acknowledged")
	}

	// Held past the busy timeout: 503 with a detail that says why.
	p2 := startBinary(t, "", "--sqlite-busy-timeout", "1s")
	h2 := holdLock(t, sqlite, p2.DBPath)
	code, body := post(t, client, p2.Addr, "/v1.0/events", faultBatch([]string{"locked-1", "locked-2"}))
	if code != 503 || !strings.Contains(body, "locked by another process") {
		t.Errorf("lock held past the busy timeout: got %d %s, want 503 saying the database is locked", code, body)
	}
	l2 := newLedger()
	stop2 := make(chan struct{})
	wg2 := load(p2.Addr, "long", 8, l2, stop2, func(c int) bool { return c == 503 })
	time.Sleep(1500 * time.Millisecond)
	h2.release(t)
	time.Sleep(300 * time.Millisecond)
	close(stop2)
	wg2.Wait()
	if len(l2.bad) > 0 {
		t.Errorf("answers other than 204 and 503: %v", l2.bad)
	}
	if code, body := post(t, client, p2.Addr, "/v1.0/event", faultEvent("after-lock")); code != 204 {
		t.Errorf("after the lock is let go: got %d %s, want 204", code, body)
	}

	for _, c := range []struct {
		p *proc
		l *ledger
	}{{p, l}, {p2, l2}} {
		integrity, stored := dbCheck(t, c.p.DBPath)
		if integrity != "ok" {
			t.Errorf("integrity_check: %s", integrity)
		}
		for m := range c.l.acked {
			if !stored[m] {
				t.Errorf("acknowledged %s is not stored", m)
			}
		}
		t.Logf("%s: %d events sent, %d acknowledged, %d answered 503, %d stored", c.p.DBPath, c.l.sent.Load(), c.l.ackedCount(), c.l.failed.Load(), len(stored))
		if c.p == p2 {
			if stored["locked-1"] || stored["locked-2"] {
				t.Errorf("a batch answered 503 was stored")
			}
			if n := len(stored) - 1; n != c.l.ackedCount() {
				t.Errorf("stored %d load events, acknowledged %d: a 503 was stored", n, c.l.ackedCount())
			}
		}
	}
}
