package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
)

// TestBinary_InvalidConfig: exit code 2, every bad setting named, nothing
// created or bound.
func TestBinary_InvalidConfig(t *testing.T) {
	t.Parallel()
	bin := gctest.Binary(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "sub", "events.db")
	cmd := exec.Command(bin, "--sqlite-file-path", dbPath, "--port", "http", "--env-file", gctest.EnvFile(t, ""))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "RATE_LIMIT=sometimes", "API_KEYS=[1]")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("got %v, want exit code 2\n%s", err, out)
	}
	for _, name := range []string{"PORT", "RATE_LIMIT", "API_KEYS"} {
		if !strings.Contains(string(out), name+":") {
			t.Errorf("output does not name %s:\n%s", name, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "sub")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the database folder was created")
	}
}

func TestBinary_Version(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(gctest.Binary(t), "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "gocolytics ") {
		t.Errorf("got %q, %v", out, err)
	}
}

// TestBinary_DevKeyWarning: without keys the dev key works, with a warning,
// and the log never shows a key.
func TestBinary_DevKeyWarning(t *testing.T) {
	t.Parallel()
	p := gctest.Start(t, "", "--api-keys", `["I-am-an-unsecure-dev-key-REPLACE_ME","secret-key-xyz"]`)
	if code, body := gctest.Post(t, nil, p.URL("/v1.0/event"), gctest.NewEvent("x").WithKey("secret-key-xyz").JSON()); code != 204 {
		t.Errorf("got %d %s", code, body)
	}
	p.Stop(t)
	log := p.Log()
	if !strings.Contains(log, "DEV KEY IS ACCEPTED") {
		t.Errorf("no dev key warning:\n%s", log)
	}
	if strings.Contains(log, "secret-key-xyz") || strings.Contains(log, "REPLACE_ME") {
		t.Errorf("the log shows a key:\n%s", log)
	}
}

// TestBinary_SIGTERM: SIGTERM under load answers every request in flight,
// stores every 204, and exits 0; as a single process and with two workers.
func TestBinary_SIGTERM(t *testing.T) {
	t.Parallel()
	for _, workers := range []string{"1", "2"} {
		t.Run("workers="+workers, func(t *testing.T) {
			p := gctest.Start(t, "", "--workers", workers)
			l := gctest.Load{Addr: p.Addr, Clients: 16, NewConns: true}.Start()
			gctest.WaitFor(t, func() bool { return l.Count(204) >= 200 }, "200 acknowledged")
			p.Stop(t)
			l.Stop()
			l.CheckStored(t, p.DBPath)
			t.Logf("acknowledged %d; statuses %v", l.AckedCount(), l.Statuses())
		})
	}
}

// TestBinary_StartFailsAfterOpen: a start that fails after the database was
// opened (the port, the METRICS_ADDR or the ADMIN_ADDR taken; one process
// or workers) exits non-zero and leaves the folder as it was: no new
// database, -wal, -shm, admin key or folder.
func TestBinary_StartFailsAfterOpen(t *testing.T) {
	t.Parallel()
	bin := gctest.Binary(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := taken.Addr().String()
	_, busyPort, _ := net.SplitHostPort(busy)
	free := func() string { return strconv.Itoa(gctest.FreePort(t)) }
	for _, c := range []struct {
		name string
		args []string
	}{
		{"port taken", []string{"--port", busyPort}},
		{"port taken, workers", []string{"--port", busyPort, "--workers", "2"}},
		{"METRICS_ADDR taken", []string{"--port", free(), "--metrics-addr", busy}},
		{"ADMIN_ADDR taken", []string{"--port", free(), "--admin-addr", busy}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "keep"), []byte("x"), 0o644)
			dbPath := filepath.Join(dir, "sub", "events.db")
			cmd := exec.Command(bin, append([]string{"--host", "127.0.0.1", "--sqlite-file-path", dbPath, "--env-file", gctest.EnvFile(t, "")}, c.args...)...)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("started with %v taken\n%s", c.args, out)
			}
			entries, _ := os.ReadDir(dir)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if strings.Join(names, " ") != "keep" {
				t.Errorf("folder holds %v after the failed start, want only keep\n%s", names, out)
			}
		})
	}
}
