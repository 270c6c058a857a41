package main

import (
	"bytes"
	"errors"
	"fmt"
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

// mountTmpfs mounts a tmpfs of the given size on a new folder and unmounts
// it when the test ends; it skips when this machine does not allow mounting.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): %v %s", err, out)
	}
	t.Cleanup(func() {
		// Lazy: the server may still be exiting with its files open.
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fillDisk writes a file until the filesystem has no room left.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill the disk: %v", err)
			}
			return
		}
	}
}

// TestFault_DiskFull: on a full disk requests get 503 saying the database
// is full, nothing of a refused request is stored, the server stays up, and
// once space returns it stores again without a restart.
func TestFault_DiskFull(t *testing.T) {
	gctest.NeedFault(t)
	dir := mountTmpfs(t, "4m")
	p := gctest.Start(t, filepath.Join(dir, "events.db"))
	client := &http.Client{Timeout: 30 * time.Second}
	acked := map[string]bool{}
	refused := map[string]bool{}
	pad := strings.Repeat("x", 2000)
	send := func(prefix string, i int) (int, string) {
		markers := make([]string, 20)
		for k := range markers {
			markers[k] = fmt.Sprintf("%s-%d-%d", prefix, i, k)
		}
		body := strings.ReplaceAll(gctest.MarkedBatch(markers...), `"value":{`, `"value":{"pad":"`+pad+`",`)
		code, resp := gctest.Post(t, client, p.URL("/v1.0/events"), body)
		for _, m := range markers {
			switch code {
			case 204:
				acked[m] = true
			case 503:
				refused[m] = true
			}
		}
		return code, resp
	}
	for i := range 20 {
		if code, body := send("room", i); code != 204 {
			t.Fatalf("before the disk is full: got %d %s", code, body)
		}
	}

	fillDisk(t, filepath.Join(dir, "filler"))
	full := 0
	for i := 0; i < 2000 && full < 5; i++ {
		code, body := send("full", i)
		switch {
		case code == 503:
			if !strings.Contains(body, `"detail"`) || !strings.Contains(body, "full") {
				t.Errorf("503 body %s does not say the disk is full", body)
			}
			full++
		case code != 204:
			t.Fatalf("disk full: got %d %s, want 204 or 503", code, body)
		}
	}
	if full == 0 {
		t.Fatal("the disk never filled up")
	}
	// Many clients at once on the full disk: group commits fail whole, and
	// every answer is a 204 or a 503.
	l := gctest.Load{Addr: p.Addr, Prefix: "crowd", Clients: 8, Batches: true, Allowed: func(c int) bool { return c == 503 }}.Start()
	time.Sleep(time.Second)
	l.Stop()
	if len(l.Bad()) > 0 || l.Unknown() > 0 {
		t.Fatalf("disk full, 8 clients: %d events unanswered, unexpected answers %v", l.Unknown(), l.Bad())
	}
	if l.Failed() == 0 {
		t.Errorf("disk full, 8 clients: no request was refused")
	}

	if code, _ := gctest.Get(t, p.URL("/healthz")); code != 503 {
		t.Errorf("/healthz on a full disk: got %d, want 503", code)
	}

	// Space returns: the very next request is stored, no restart.
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if code, body := send("again", i); code != 204 {
			t.Fatalf("space returned, request %d: got %d %s, want 204", i, code, body)
		}
	}
	if code, _ := gctest.Get(t, p.URL("/healthz")); code != 200 {
		t.Errorf("/healthz once space returned: got %d, want 200", code)
	}
	p.Stop(t)
	integrity, stored := gctest.Check(t, p.DBPath)
	if integrity != "ok" {
		t.Errorf("integrity_check: %s", integrity)
	}
	for m := range acked {
		if !stored[m] {
			t.Errorf("acknowledged %s is not stored", m)
		}
	}
	for m := range refused {
		if stored[m] {
			t.Errorf("%s was answered 503 but is stored", m)
		}
	}
	crowd := 0
	for m := range stored {
		if strings.HasPrefix(m, "crowd-") {
			crowd++
			if !l.Acked(m) {
				t.Errorf("%s was answered 503 but is stored", m)
			}
		}
	}
	if crowd != l.AckedCount() {
		t.Errorf("8 clients: %d events acknowledged, %d stored", l.AckedCount(), crowd)
	}
	// Thousands of failed commits, but the log says so at most once a
	// second, and says when commits succeed again.
	if logged := strings.Count(p.Log(), "commit failed"); logged == 0 || logged > 20 {
		t.Errorf("%d failed commits logged, want 1 to 20", logged)
	}
	if !strings.Contains(p.Log(), "commits succeed again") {
		t.Errorf("the log does not say commits succeed again:\n%s", p.Log())
	}
	t.Logf("disk full: one client: %d events acknowledged, %d refused with 503; 8 clients: %d sent, %d acknowledged, %d refused; %d rows stored in all",
		len(acked), len(refused), l.Sent(), l.AckedCount(), l.Failed(), len(stored))
}

// TestFault_StartupRefusals: a database the server cannot or must not use
// stops it at start with a message that says why and a non-zero exit code,
// and the file is left byte for byte as it was.
func TestFault_StartupRefusals(t *testing.T) {
	gctest.NeedFault(t)
	bin := gctest.Binary(t)
	base, err := os.MkdirTemp("", "gocolytics-fault")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	// Run by root, the unreadable and read-only cases run the server as
	// nobody, since root reads and writes whatever the permissions say:
	// everything it needs must be reachable by nobody.
	os.Chmod(base, 0o755)
	nbin := filepath.Join(base, "gocolytics")
	copyFile(t, bin, nbin, 0o755)
	env := filepath.Join(base, "empty.env")
	os.WriteFile(env, nil, 0o644)

	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) string // returns the database path
		nobody  bool
		wantMsg string
	}{
		{"unreadable", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "events.db")
			makeDB(t, p, "wal", 0)
			os.Chmod(p, 0o000)
			os.Chmod(dir, 0o777)
			return p
		}, true, "not readable and writable by this user: permission denied"},
		{"not a database", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "events.db")
			os.WriteFile(p, bytes.Repeat([]byte("this is not a database\n"), 200), 0o644)
			return p
		}, false, "not a database"},
		{"unknown newer schema", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "events.db")
			makeDB(t, p, "wal", 7)
			return p
		}, false, "unknown schema"},
		{"read-only folder, WAL database", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "events.db")
			makeDB(t, p, "wal", 0)
			os.Chmod(p, 0o666)
			os.Chmod(dir, 0o555)
			return p
		}, true, "is not writable"},
		{"read-only folder, Pycolytics database", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "events.db")
			makeDB(t, p, "delete", 0)
			os.Chmod(p, 0o666)
			os.Chmod(dir, 0o555)
			return p
		}, true, "is not writable"},
		{"read-only file", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "events.db")
			makeDB(t, p, "wal", 0)
			os.Chmod(p, 0o444)
			os.Chmod(dir, 0o777)
			return p
		}, true, "not readable and writable"},
		{"full disk, no database", func(t *testing.T, dir string) string {
			out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput()
			if err != nil {
				t.Skipf("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): %v %s", err, out)
			}
			t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
			fillDisk(t, filepath.Join(dir, "fill"))
			return filepath.Join(dir, "new", "events.db")
		}, false, "full"},
		{"read-only folder, no database", func(t *testing.T, dir string) string {
			os.Chmod(dir, 0o555)
			return filepath.Join(dir, "events.db")
		}, true, "is not writable"},
	}
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(base, fmt.Sprintf("case%d", i))
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			path := tt.setup(t, dir)
			before := folderBytes(t, dir)
			cmd := exec.Command(nbin, "--port", "0", "--sqlite-file-path", path, "--api-keys", `["`+gctest.Key+`"]`, "--env-file", env)
			cmd.Dir = base
			if tt.nobody && os.Geteuid() == 0 {
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
			}
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("the server started against a database it must refuse\n%s", out.String())
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Errorf("got %v, want a non-zero exit code\n%s", err, out.String())
			}
			msg := out.String()
			if !strings.Contains(msg, path) || !strings.Contains(strings.ToLower(msg), tt.wantMsg) {
				t.Errorf("the message does not name the file and say %q:\n%s", tt.wantMsg, msg)
			}
			if strings.Contains(msg, "listening") {
				t.Errorf("the server listened:\n%s", msg)
			}
			os.Chmod(dir, 0o755)
			after := folderBytes(t, dir)
			if len(before) != len(after) {
				t.Errorf("files before %v, after %v", keys(before), keys(after))
			}
			for name, b := range before {
				if !bytes.Equal(b, after[name]) {
					t.Errorf("%s changed", name)
				}
			}
			t.Logf("exit %d: %s", ee.ExitCode(), strings.TrimSpace(msg))
		})
	}
}

// makeDB creates an event database in the given journal mode with one row
// and the given user_version, and closes it (a WAL database leaves no -wal
// file behind).
func makeDB(t *testing.T, path, journal string, userVersion int) {
	t.Helper()
	sqlite := gctest.NeedProgram(t, "sqlite3", "sqlite3")
	script := fmt.Sprintf(`PRAGMA journal_mode=%s;
CREATE TABLE event (event_type VARCHAR NOT NULL, application VARCHAR NOT NULL, version VARCHAR NOT NULL, platform VARCHAR NOT NULL, user_id VARCHAR NOT NULL, session_id VARCHAR NOT NULL, value JSON NOT NULL, id INTEGER NOT NULL, time DATETIME NOT NULL, PRIMARY KEY (id));
INSERT INTO event VALUES ('e','a','v','p','u','s','{}',1,'2024-01-01 00:00:00.000000');
PRAGMA user_version=%d;`, journal, userVersion)
	if out, err := exec.Command(sqlite, path, script).CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v %s", err, out)
	}
}

// folderBytes reads every file of dir (as root, whatever its mode).
func folderBytes(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}
