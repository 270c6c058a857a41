package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
)

// postKey posts one event with key on a new connection and returns the
// status.
func postKey(t *testing.T, s *gctest.Server, key string) int {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	code, _ := gctest.Post(t, c, s.URL("/v1.0/event"), gctest.NewEvent("k").WithKey(key).JSON())
	return code
}

// TestWorkers_SocketActivation: under socket activation the workers serve
// the socket systemd passed to the supervisor, and only the supervisor sees
// systemd's variables.
func TestWorkers_SocketActivation(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "events.db")
	// sh sets LISTEN_PID to its own pid, which exec hands to the binary.
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"`, gctest.Binary(t),
		"--port", "1", "--workers", "2", "--sqlite-file-path", dbPath, "--api-keys", `["`+gctest.Key+`"]`,
		"--rate-limit", "off", "--env-file", gctest.EnvFile(t, ""))
	cmd.Dir = dir
	cmd.ExtraFiles = []*os.File{f}
	p := gctest.StartCmd(t, cmd, ln.Addr().String(), dbPath)
	if !strings.Contains(p.Log(), "addr="+ln.Addr().String()) {
		t.Errorf("not listening on the passed socket %s:\n%s", ln.Addr(), p.Log())
	}
	for range 20 {
		if got := postKey(t, p, gctest.Key); got != 204 {
			t.Fatalf("got %d, want 204", got)
		}
	}
	for w, pids := range workerPIDs(p) {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pids[0]))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(env), "LISTEN_FDS") || strings.Contains(string(env), "NOTIFY_SOCKET") {
			t.Errorf("worker %d was given systemd's variables", w)
		}
	}
	p.Stop(t)
	if rows := gctest.CountRows(t, dbPath); rows != 20 {
		t.Errorf("got %d rows, want 20", rows)
	}
}

// TestWorkers_Reload: SIGHUP reaches every worker (keys) and the
// supervisor (rate budget), and kills none.
func TestWorkers_Reload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "events.db")
	env := filepath.Join(dir, "test.env")
	os.WriteFile(env, []byte(`API_KEYS=["old-key"]`+"\nRATE_LIMIT=off\n"), 0o600)
	port := gctest.FreePort(t)
	cmd := exec.Command(gctest.Binary(t), "--host", "127.0.0.1", "--port", fmt.Sprint(port), "--workers", "2", "--sqlite-file-path", dbPath, "--env-file", env)
	cmd.Dir = dir
	p := gctest.StartCmd(t, cmd, fmt.Sprintf("127.0.0.1:%d", port), dbPath)
	if got := postKey(t, p, "old-key"); got != 204 {
		t.Fatalf("before the reload: got %d, want 204", got)
	}
	os.WriteFile(env, []byte(`API_KEYS=["new-key"]`+"\nRATE_LIMIT=30/hour\n"), 0o600)
	p.Signal(t, syscall.SIGHUP)
	// The supervisor and each worker log when they have applied it. Only
	// then may the requests below start: a worker still on the old
	// settings refuses the new key without asking the budget, so requests
	// sent while waiting would spend it by chance (drained before the
	// second worker reloaded, under load: no 10 in a row ever came).
	gctest.WaitFor(t, func() bool { return strings.Count(p.Log(), "msg=reloaded") >= 3 }, "the supervisor's and both workers' reloads")
	if strings.Contains(p.Log(), "worker died") {
		t.Errorf("a worker died at the reload:\n%s", p.Log())
	}
	for range 10 {
		if got := postKey(t, p, "new-key"); got != 204 {
			t.Errorf("new key after the reload: got %d, want 204", got)
		}
	}
	for range 10 {
		if got := postKey(t, p, "old-key"); got != 401 && got != 429 {
			t.Errorf("old key after the reload: got %d, want 401", got)
		}
	}
	// The budget counts from the reload: 30 per hour, the 10 accepted and
	// the 10 refused keys included, whichever worker answered.
	n204 := 0
	for range 20 {
		if postKey(t, p, "new-key") == 204 {
			n204++
		}
	}
	if n204 != 10 {
		t.Errorf("got %d × 204 of the last 20, want 10 (30 per hour, 20 spent)", n204)
	}
	p.Stop(t)
}
