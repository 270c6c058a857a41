// Package chromium drives Debian's headless Chromium for the tests of the
// HTTP side (CORS from a web page, the dashboard): one place that finds it,
// starts it with the flags a test machine needs, and ends it and its
// helper processes.
package chromium

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Path returns the Chromium to drive, or skips the test (fails it in CI,
// whose .ci/run installs the package).
func Path(t testing.TB, what string) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("GOCOLYTICS_CI") != "" {
		t.Fatal("chromium is missing, but .ci/run installs it (.ci/packages)")
	}
	t.Skipf("chromium not installed (Debian package chromium): skipping %s", what)
	return ""
}

// Run loads url in a fresh headless Chromium (a new profile) with the extra
// flags (such as --dump-dom or --screenshot=FILE), lets the page's scripts
// run for up to budget of virtual time, and returns what Chromium printed
// and the page's console messages.
func Run(t testing.TB, chromium, url string, budget time.Duration, extra ...string) (string, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append(flags(t), "--virtual-time-budget="+budgetMillis(budget))
	args = append(args, extra...)
	cmd := exec.CommandContext(ctx, chromium, append(args, url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Chromium starts helper processes; its own process group lets the test
	// end them all.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	err := cmd.Wait()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.Bytes())
	}
	var console []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, ":CONSOLE") {
			console = append(console, line)
		}
	}
	return stdout.String(), console
}

// flags are what every Chromium of the tests runs with: headless on a test
// machine (no sandbox, GPU, QUIC or background traffic), a fresh profile,
// console messages on stderr.
func flags(t testing.TB) []string {
	return []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir=" + t.TempDir(), "--enable-logging=stderr", "--v=0"}
}

func budgetMillis(d time.Duration) string {
	return strconv.FormatInt(d.Milliseconds(), 10)
}
