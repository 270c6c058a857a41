package systemd_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func post(url, body string) (int, error) {
	resp, err := http.Post(url+"/v1.0/event", "", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func mustPost(tb testing.TB, url, body string) int {
	tb.Helper()
	code, err := post(url, body)
	if err != nil {
		tb.Fatalf("POST %s: %v", url, err)
	}
	return code
}

// onlyPingsAndStatus fails the test for any notification in ms other than
// WATCHDOG=1 and STATUS=.
func onlyPingsAndStatus(tb testing.TB, when string, ms []string) {
	tb.Helper()
	for _, m := range ms {
		if m != "WATCHDOG=1" && !strings.HasPrefix(m, "STATUS=") {
			tb.Errorf("unexpected notification %s: %q", when, m)
		}
	}
}

// TestSocketActivation_Notify runs the binary as systemd runs a
// socket-activated Type=notify service with a watchdog. It must serve on the
// passed socket (HOST names an address this machine does not have, so a
// socket of its own would fail) and tell systemd READY, STATUS, WATCHDOG and,
// at the end, STOPPING, in that order.
func TestSocketActivation_Notify(t *testing.T) {
	ln := tcpListener(t)
	sock := newNotifySocket(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "db", "events.db")
	p := startActivated(t, ln, dir, []string{
		"NOTIFY_SOCKET=" + sock.Path,
		"WATCHDOG_USEC=400000",
		"SQLITE_FILE_PATH=" + dbPath,
		`API_KEYS=["k1"]`,
		"HOST=192.0.2.1",
		"PORT=9",
	})
	addr := ln.Addr().String()
	url := "http://" + addr

	if ready := sock.next(t); !strings.HasPrefix(ready, "READY=1\nSTATUS=listening on "+addr+";") {
		t.Fatalf("first notification %q, want READY=1 with the status; log:\n%s", ready, p.Log)
	}
	if code := mustPost(t, url, event("activated", "k1")); code != 204 {
		t.Fatalf("POST with the key: status %d, want 204", code)
	}
	if code := mustPost(t, url, event("activated", "wrong")); code != 401 {
		t.Errorf("POST with a wrong key: status %d, want 401", code)
	}
	if got := countRows(t, dbPath, "activated"); got != 1 {
		t.Errorf("rows after one 204: %d, want 1", got)
	}
	// The status line follows the writer's counters; pings go on meanwhile.
	_, before := sock.until(t, "STATUS=listening on "+addr+"; 1 events stored since start; 0 queued")
	onlyPingsAndStatus(t, "while running", before)
	_, before = sock.until(t, "WATCHDOG=1")
	onlyPingsAndStatus(t, "while running", before)

	p.signal(t, syscall.SIGTERM)
	stopping, before := sock.until(t, "STOPPING=1")
	onlyPingsAndStatus(t, "before STOPPING=1", before)
	if !strings.Contains(stopping, "\nSTATUS=stopping") {
		t.Errorf("STOPPING=1 came without a status: %q", stopping)
	}
	if err := p.wait(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v; log:\n%s", err, p.Log)
	}
	// Nothing after STOPPING=1: no ping may keep a stopping service alive.
	sock.conn.SetReadDeadline(time.Now())
	if n, err := sock.conn.Read(make([]byte, 4096)); err == nil {
		t.Errorf("a notification after STOPPING=1 (%d bytes)", n)
	}
	if log := p.Log.String(); !strings.Contains(log, "using the socket systemd passed") {
		t.Errorf("the log does not say the passed socket is used:\n%s", log)
	}
}

// TestSocketActivation_Absent checks that without LISTEN_FDS the server binds
// HOST:PORT itself, and that a LISTEN_PID of another process is ignored.
func TestSocketActivation_Absent(t *testing.T) {
	sock := newNotifySocket(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "events.db")
	cmd := exec.Command(binary(t))
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"NOTIFY_SOCKET=" + sock.Path,
		"LISTEN_PID=1", "LISTEN_FDS=1",
		"SQLITE_FILE_PATH=" + dbPath,
		`API_KEYS=["k1"]`,
		"HOST=127.0.0.1", "PORT=0",
	}
	p := start(t, cmd)
	ready := sock.next(t)
	addr, _, ok := strings.Cut(strings.TrimPrefix(ready, "READY=1\nSTATUS=listening on "), ";")
	if !ok || !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("first notification %q, want READY=1 and a status naming 127.0.0.1:PORT; log:\n%s", ready, p.Log)
	}
	if code := mustPost(t, "http://"+addr, event("bound", "k1")); code != 204 {
		t.Fatalf("POST: status %d, want 204", code)
	}
	p.signal(t, syscall.SIGTERM)
	if err := p.wait(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v; log:\n%s", err, p.Log)
	}
	if got := countRows(t, dbPath, "bound"); got != 1 {
		t.Errorf("rows: %d, want 1", got)
	}
}

// TestReload_UnderLoad rotates the keys with SIGHUP while clients post
// without a pause: every request under way must still answer 204 (the
// clients use a key in both the old and the new set), and after READY=1 the
// old key is refused and the new one accepted. An invalid file afterwards
// keeps the keys in force.
func TestReload_UnderLoad(t *testing.T) {
	ln := tcpListener(t)
	sock := newNotifySocket(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "events.db")
	envFile := filepath.Join(dir, "gocolytics.env")
	writeEnv := func(content string) {
		t.Helper()
		if err := os.WriteFile(envFile+".tmp", []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(envFile+".tmp", envFile); err != nil {
			t.Fatal(err)
		}
	}
	writeEnv(`API_KEYS='["old","steady"]'` + "\n")
	p := startActivated(t, ln, dir, []string{
		"NOTIFY_SOCKET=" + sock.Path,
		"SQLITE_FILE_PATH=" + dbPath,
		"RATE_LIMIT=off",
	}, "--env-file="+envFile)
	url := "http://" + ln.Addr().String()
	if ready := sock.next(t); !strings.HasPrefix(ready, "READY=1") {
		t.Fatalf("first notification %q, want READY=1; log:\n%s", ready, p.Log)
	}
	if code := mustPost(t, url, event("before", "old")); code != 204 {
		t.Fatalf("old key before the reload: status %d, want 204", code)
	}

	var (
		stop     atomic.Bool
		accepted atomic.Int64
		wg       sync.WaitGroup
		failMu   sync.Mutex
		failures []string
	)
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				code, err := post(url, event("load", "steady"))
				if err == nil && code == 204 {
					accepted.Add(1)
					continue
				}
				failMu.Lock()
				failures = append(failures, fmt.Sprintf("status %d, err %v", code, err))
				failMu.Unlock()
			}
		})
	}
	waitFor(t, func() bool { return accepted.Load() >= 20 })

	writeEnv(`API_KEYS='["new","steady"]'` + "\n")
	p.signal(t, syscall.SIGHUP)
	reloading, _ := sock.until(t, "RELOADING=1")
	if !strings.Contains(reloading, "\nMONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", reloading)
	}
	sock.until(t, "READY=1")
	mid := accepted.Load()
	waitFor(t, func() bool { return accepted.Load() >= mid+20 })

	if code := mustPost(t, url, event("after", "old")); code != 401 {
		t.Errorf("old key after the reload: status %d, want 401", code)
	}
	if code := mustPost(t, url, event("after", "new")); code != 204 {
		t.Errorf("new key after the reload: status %d, want 204", code)
	}

	writeEnv("API_KEYS=not a list\n")
	p.signal(t, syscall.SIGHUP)
	sock.until(t, "RELOADING=1")
	sock.until(t, "READY=1")
	if code := mustPost(t, url, event("kept", "new")); code != 204 {
		t.Errorf("new key after an invalid reload: status %d, want 204 (old settings kept)", code)
	}
	if code := mustPost(t, url, event("kept", "old")); code != 401 {
		t.Errorf("old key after an invalid reload: status %d, want 401", code)
	}

	stop.Store(true)
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d requests failed during the reloads, first: %s", len(failures), failures[0])
	}
	p.signal(t, syscall.SIGTERM)
	if err := p.wait(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v; log:\n%s", err, p.Log)
	}
	if got, want := countRows(t, dbPath, "load"), int(accepted.Load()); got != want {
		t.Errorf("load rows: %d, want %d (one per 204)", got, want)
	}
	if got := countRows(t, dbPath, "after"); got != 1 {
		t.Errorf("rows after the reload: %d, want 1 (the new key's)", got)
	}
	log := p.Log.String()
	if !strings.Contains(log, "reload failed; keeping the old settings") || !strings.Contains(log, "API_KEYS") {
		t.Errorf("the log does not say why the invalid reload was refused:\n%s", log)
	}
	for _, keys := range []string{`["old","steady"]`, `["new","steady"]`, "not a list"} {
		if strings.Contains(log, keys) {
			t.Errorf("the log shows the keys %s:\n%s", keys, log)
		}
	}
}

// waitFor polls cond for up to 20 s.
func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not met within 20 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
