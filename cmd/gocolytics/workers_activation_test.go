package main

import (
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func postKey(t *testing.T, addr, key string) int {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Post("http://"+addr+"/v1.0/event", "", strings.NewReader(strings.Replace(binEvent("k"), "bin-key", key, 1)))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestWorkers_SocketActivation: under socket activation the workers serve
// the socket systemd passed to the supervisor, and only the supervisor sees
// systemd's variables.
func TestWorkers_SocketActivation(t *testing.T) {
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
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"`, buildBinary(t),
		"--port", "1", "--workers", "2", "--sqlite-file-path", dbPath, "--api-keys", `["bin-key"]`,
		"--rate-limit", "off", "--env-file", envFile(t, ""))
	cmd.Dir = dir
	cmd.ExtraFiles = []*os.File{f}
	p := startCmd(t, cmd, dbPath)
	if p.Addr != ln.Addr().String() {
		t.Errorf("listening on %s, want the passed socket %s", p.Addr, ln.Addr())
	}
	for range 20 {
		if got := postKey(t, p.Addr, "bin-key"); got != 204 {
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
	stopBinary(t, p)
	db, err := sql.Open("sqlite3", "file:"+dbPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows int
	if err := db.QueryRow("SELECT count(*) FROM event").Scan(&rows); err != nil || rows != 20 {
		t.Errorf("got %d rows (%v), want 20", rows, err)
	}
}

// TestWorkers_Reload: SIGHUP reaches every worker (keys) and the
// supervisor (rate budget).
func TestWorkers_Reload(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "events.db")
	env := filepath.Join(dir, "test.env")
	os.WriteFile(env, []byte(`API_KEYS=["old-key"]`+"\nRATE_LIMIT=off\n"), 0o600)
	cmd := exec.Command(buildBinary(t), "--port", "0", "--workers", "2", "--sqlite-file-path", dbPath, "--env-file", env)
	cmd.Dir = dir
	p := startCmd(t, cmd, dbPath)
	if got := postKey(t, p.Addr, "old-key"); got != 204 {
		t.Fatalf("before the reload: got %d, want 204", got)
	}
	os.WriteFile(env, []byte(`API_KEYS=["new-key"]`+"\nRATE_LIMIT=30/hour\n"), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(p.log(), "msg=reloaded") }, "the supervisor's reload")
	ok := 0
	waitFor(t, func() bool {
		if postKey(t, p.Addr, "new-key") == 204 {
			ok++
		} else {
			ok = 0
		}
		return ok == 10
	}, "10 requests in a row accepted with the new key")
	for range 10 {
		if got := postKey(t, p.Addr, "old-key"); got != 401 && got != 429 {
			t.Errorf("old key after the reload: got %d, want 401", got)
		}
	}
	// The budget counts from the reload: 30 per hour, the 10 accepted and
	// the 10 refused keys included, whichever worker answered.
	n204 := 0
	for range 20 {
		if postKey(t, p.Addr, "new-key") == 204 {
			n204++
		}
	}
	if n204 != 10 {
		t.Errorf("got %d × 204 of the last 20, want 10 (30 per hour, 20 spent)", n204)
	}
	stopBinary(t, p)
}
