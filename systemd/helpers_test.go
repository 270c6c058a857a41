package systemd_test

import (
	"bytes"
	"database/sql"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// notifySocket is a unixgram socket standing in for systemd's NOTIFY_SOCKET.
type notifySocket struct {
	Path string
	conn *net.UnixConn
}

func newNotifySocket(tb testing.TB) *notifySocket {
	tb.Helper()
	// A socket path must stay under ~100 bytes: t.TempDir can be longer.
	dir, err := os.MkdirTemp("", "sdnotify")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		tb.Fatalf("listen on %s: %v", path, err)
	}
	tb.Cleanup(func() { conn.Close() })
	return &notifySocket{Path: path, conn: conn}
}

// next returns the next notification, failing the test after 20 s.
func (s *notifySocket) next(tb testing.TB) string {
	tb.Helper()
	buf := make([]byte, 4096)
	s.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := s.conn.Read(buf)
	if err != nil {
		tb.Fatalf("waiting for a notification: %v", err)
	}
	return string(buf[:n])
}

// until reads notifications until one starts with prefix and returns it with
// every notification read on the way.
func (s *notifySocket) until(tb testing.TB, prefix string) (string, []string) {
	tb.Helper()
	var seen []string
	for {
		m := s.next(tb)
		if strings.HasPrefix(m, prefix) {
			return m, seen
		}
		seen = append(seen, m)
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildOut  []byte
)

// binary builds cmd/gocolytics once per test run.
func binary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gocolytics-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "gocolytics")
		cmd := exec.Command("go", "build", "-o", binPath, "../cmd/gocolytics")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		tb.Fatalf("build gocolytics: %v\n%s", buildErr, buildOut)
	}
	return binPath
}

// syncBuffer collects a process's log while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// process is the real binary, started the way systemd starts it.
type process struct {
	cmd  *exec.Cmd
	Log  *syncBuffer
	done chan error
}

// startActivated execs the binary with ln passed as fd 3, LISTEN_FDS=1 and
// LISTEN_PID set to the binary's own pid (sh sets it to $$ and then execs,
// which keeps the pid), as systemd does for a socket-activated service. env
// is the whole environment besides PATH; dir is the working directory.
func startActivated(tb testing.TB, ln *net.TCPListener, dir string, env []string, args ...string) *process {
	tb.Helper()
	f, err := ln.File()
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	script := `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=gocolytics.socket exec "$0" "$@"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, binary(tb)}, args...)...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.ExtraFiles = []*os.File{f}
	return start(tb, cmd)
}

// start starts cmd, collecting its output, and kills it at the end of the
// test if it still runs.
func start(tb testing.TB, cmd *exec.Cmd) *process {
	tb.Helper()
	p := &process{cmd: cmd, Log: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.Log, p.Log
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	tb.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *process) signal(tb testing.TB, sig syscall.Signal) {
	tb.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		tb.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits up to 30 s for the process to exit and returns its error.
func (p *process) wait(tb testing.TB) error {
	tb.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(30 * time.Second):
		tb.Fatalf("the server did not exit; log:\n%s", p.Log)
		return nil
	}
}

// tcpListener listens on a free port of 127.0.0.1.
func tcpListener(tb testing.TB) *net.TCPListener {
	tb.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	return ln
}

// countRows counts the rows of the event table with the given event_type.
func countRows(tb testing.TB, dbPath, eventType string) int {
	tb.Helper()
	db, err := sql.Open("sqlite3", "file:"+dbPath+"?mode=ro")
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM event WHERE event_type = ?", eventType).Scan(&n); err != nil {
		tb.Fatalf("count rows: %v", err)
	}
	return n
}

// event is one event as JSON, with the given type and key.
func event(eventType, key string) string {
	return `{"event_type":"` + eventType + `","application":"app","version":"1","platform":"linux","user_id":"u","session_id":"s","value":{},"api_key":"` + key + `"}`
}
