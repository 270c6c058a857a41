package main

import (
	"bufio"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// buildBinary builds cmd/gocolytics once per test run, for tests that need a
// real process (exit codes, signals, kill -9).
func buildBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gocolytics-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "gocolytics")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is the server binary running in its own process.
type proc struct {
	cmd    *exec.Cmd
	Addr   string
	DBPath string
	stderr *strings.Builder
	mu     *sync.Mutex
	exited chan error
}

var listenRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// startBinary runs the binary with a temporary database on 127.0.0.1:0 and
// waits for its "listening" line. The process is killed when the test ends
// if it is still running.
func startBinary(t *testing.T, dbPath string, args ...string) *proc {
	t.Helper()
	bin := buildBinary(t)
	if dbPath == "" {
		dbPath = filepath.Join(t.TempDir(), "events.db")
	}
	args = append([]string{"--port", "0", "--sqlite-file-path", dbPath, "--api-keys", `["bin-key"]`, "--rate-limit", "off",
		"--env-file", envFile(t, "")}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	return startCmd(t, cmd, dbPath)
}

// startCmd starts cmd, a run of the binary, and waits for its "listening"
// line (startBinary for a command it cannot build: extra files, own
// environment).
func startCmd(t *testing.T, cmd *exec.Cmd, dbPath string) *proc {
	t.Helper()
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	p := &proc{cmd: cmd, DBPath: dbPath, stderr: &strings.Builder{}, mu: &sync.Mutex{}, exited: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	go func() { err := cmd.Wait(); pw.Close(); p.exited <- err }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	select {
	case p.Addr = <-addr:
	case err := <-p.exited:
		t.Fatalf("server exited: %v\n%s", err, p.log())
	case <-time.After(20 * time.Second):
		t.Fatalf("server did not start\n%s", p.log())
	}
	return p
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case err := <-p.exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(limit):
		t.Fatalf("still running after %v\n%s", limit, p.log())
		return -1
	}
}

func binEvent(marker string) string {
	return fmt.Sprintf(`{"event_type":%q,"application":"a","version":"1","platform":"p","user_id":"u","session_id":"s","value":{},"api_key":"bin-key"}`, marker)
}

// TestBinary_InvalidConfig: exit code 2, every bad setting named, nothing
// created or bound.
func TestBinary_InvalidConfig(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "sub", "events.db")
	cmd := exec.Command(bin, "--sqlite-file-path", dbPath, "--port", "http", "--env-file", envFile(t, ""))
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
	out, err := exec.Command(buildBinary(t), "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "gocolytics ") {
		t.Errorf("got %q, %v", out, err)
	}
}

// TestBinary_DevKeyWarning: without keys the dev key works, with a warning,
// and the log never shows a key.
func TestBinary_DevKeyWarning(t *testing.T) {
	p := startBinary(t, "", "--api-keys", `["I-am-an-unsecure-dev-key-REPLACE_ME","secret-key-xyz"]`)
	resp, err := http.Post("http://"+p.Addr+"/v1.0/event", "", strings.NewReader(strings.Replace(binEvent("x"), "bin-key", "secret-key-xyz", 1)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Errorf("got %d", resp.StatusCode)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 15*time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
	log := p.log()
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
	for _, workers := range []string{"1", "2"} {
		t.Run("workers="+workers, func(t *testing.T) {
			p := startBinary(t, "", "--workers", workers)
			l := startLoad(p.Addr, 16, 0)
			waitFor(t, func() bool { return l.count(204) >= 200 }, "200 acknowledged")
			stopBinary(t, p)
			l.finish()
			checkStored(t, l, p.DBPath)
			t.Logf("acknowledged %d; statuses %v", len(l.acked), l.status)
		})
	}
}

// storedMarkers returns the event_type of every stored row.
func storedMarkers(t *testing.T, dbPath string) map[string]bool {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+dbPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT event_type FROM event")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var m string
		rows.Scan(&m)
		if out[m] {
			t.Errorf("%s stored twice", m)
		}
		out[m] = true
	}
	return out
}
