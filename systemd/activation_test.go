package systemd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
)

// mustPost posts body to url's /v1.0/event and returns the status.
func mustPost(tb testing.TB, url, body string) int {
	tb.Helper()
	code, _ := gctest.Post(tb, nil, url+"/v1.0/event", body)
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
	sock := gctest.NewNotifySocket(t)
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

	if ready := sock.Next(t); !strings.HasPrefix(ready, "READY=1\nSTATUS=listening on "+addr+";") {
		t.Fatalf("first notification %q, want READY=1 with the status; log:\n%s", ready, p.Log())
	}
	if code := mustPost(t, url, event("activated", "k1")); code != 204 {
		t.Fatalf("POST with the key: status %d, want 204", code)
	}
	if code := mustPost(t, url, event("activated", "wrong")); code != 401 {
		t.Errorf("POST with a wrong key: status %d, want 401", code)
	}
	if got := stored(t, dbPath, "activated"); got != 1 {
		t.Errorf("rows after one 204: %d, want 1", got)
	}
	// The status line follows the writer's counters; pings go on meanwhile.
	_, before := sock.Until(t, "STATUS=listening on "+addr+"; 1 events stored since start; 0 queued")
	onlyPingsAndStatus(t, "while running", before)
	_, before = sock.Until(t, "WATCHDOG=1")
	onlyPingsAndStatus(t, "while running", before)

	p.Signal(t, syscall.SIGTERM)
	stopping, before := sock.Until(t, "STOPPING=1")
	onlyPingsAndStatus(t, "before STOPPING=1", before)
	if !strings.Contains(stopping, "\nSTATUS=stopping") {
		t.Errorf("STOPPING=1 came without a status: %q", stopping)
	}
	if code := p.Wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; log:\n%s", code, p.Log())
	}
	// Nothing after STOPPING=1: no ping may keep a stopping service alive.
	if m, ok := sock.Receive(100 * time.Millisecond); ok {
		t.Errorf("a notification after STOPPING=1: %q", m)
	}
	if log := p.Log(); !strings.Contains(log, "using the socket systemd passed") {
		t.Errorf("the log does not say the passed socket is used:\n%s", log)
	}
}

// TestSocketActivation_Absent checks that without LISTEN_FDS the server binds
// HOST:PORT itself, and that a LISTEN_PID of another process is ignored.
func TestSocketActivation_Absent(t *testing.T) {
	sock := gctest.NewNotifySocket(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "events.db")
	cmd := exec.Command(gctest.Binary(t))
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"NOTIFY_SOCKET=" + sock.Path,
		"LISTEN_PID=1", "LISTEN_FDS=1",
		"SQLITE_FILE_PATH=" + dbPath,
		`API_KEYS=["k1"]`,
		"HOST=127.0.0.1", "PORT=0",
	}
	p := gctest.Launch(t, cmd)
	ready := sock.Next(t)
	addr, _, ok := strings.Cut(strings.TrimPrefix(ready, "READY=1\nSTATUS=listening on "), ";")
	if !ok || !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("first notification %q, want READY=1 and a status naming 127.0.0.1:PORT; log:\n%s", ready, p.Log())
	}
	if code := mustPost(t, "http://"+addr, event("bound", "k1")); code != 204 {
		t.Fatalf("POST: status %d, want 204", code)
	}
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; log:\n%s", code, p.Log())
	}
	if got := stored(t, dbPath, "bound"); got != 1 {
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
	sock := gctest.NewNotifySocket(t)
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
	if ready := sock.Next(t); !strings.HasPrefix(ready, "READY=1") {
		t.Fatalf("first notification %q, want READY=1; log:\n%s", ready, p.Log())
	}
	if code := mustPost(t, url, event("before", "old")); code != 204 {
		t.Fatalf("old key before the reload: status %d, want 204", code)
	}

	l := gctest.Load{Addr: ln.Addr().String(), Prefix: "load", Clients: 4, APIKey: "steady"}.Start()
	defer l.Stop()
	gctest.WaitFor(t, func() bool { return l.Count(204) >= 20 }, "20 requests accepted")

	writeEnv(`API_KEYS='["new","steady"]'` + "\n")
	p.Signal(t, syscall.SIGHUP)
	reloading, _ := sock.Until(t, "RELOADING=1")
	if !strings.Contains(reloading, "\nMONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", reloading)
	}
	sock.Until(t, "READY=1")
	mid := l.Count(204)
	gctest.WaitFor(t, func() bool { return l.Count(204) >= mid+20 }, "20 more requests accepted")

	if code := mustPost(t, url, event("after", "old")); code != 401 {
		t.Errorf("old key after the reload: status %d, want 401", code)
	}
	if code := mustPost(t, url, event("after", "new")); code != 204 {
		t.Errorf("new key after the reload: status %d, want 204", code)
	}

	writeEnv("API_KEYS=not a list\n")
	p.Signal(t, syscall.SIGHUP)
	sock.Until(t, "RELOADING=1")
	sock.Until(t, "READY=1")
	if code := mustPost(t, url, event("kept", "new")); code != 204 {
		t.Errorf("new key after an invalid reload: status %d, want 204 (old settings kept)", code)
	}
	if code := mustPost(t, url, event("kept", "old")); code != 401 {
		t.Errorf("old key after an invalid reload: status %d, want 401", code)
	}

	l.Stop()
	if n := l.Failed() + l.Unknown(); n > 0 {
		t.Errorf("%d requests failed during the reloads (statuses %v, first error %v)", n, l.Statuses(), l.Err())
	}
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; log:\n%s", code, p.Log())
	}
	if got, want := stored(t, dbPath, "load-"), l.Count(204); got != want {
		t.Errorf("load rows: %d, want %d (one per 204)", got, want)
	}
	l.CheckStored(t, dbPath)
	if got := stored(t, dbPath, "after"); got != 1 {
		t.Errorf("rows after the reload: %d, want 1 (the new key's)", got)
	}
	log := p.Log()
	if !strings.Contains(log, "reload failed; keeping the old settings") || !strings.Contains(log, "API_KEYS") {
		t.Errorf("the log does not say why the invalid reload was refused:\n%s", log)
	}
	for _, keys := range []string{`["old","steady"]`, `["new","steady"]`, "not a list"} {
		if strings.Contains(log, keys) {
			t.Errorf("the log shows the keys %s:\n%s", keys, log)
		}
	}
}
