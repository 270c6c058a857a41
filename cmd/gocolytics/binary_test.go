package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
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
