// Package pgtest starts a real PostgreSQL server of its own for tests: the
// one place that knows how to find Debian's initdb and pg_ctl, run them as
// the postgres user in a temporary folder on a free loopback port, and stop
// the server at the end.
package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Password is the password of the test server's postgres role. Tests check
// that it never shows up in a log.
const Password = "pgtest-S3cret-pw"

// binDirs are where Debian's postgresql package puts its programs, newest
// first.
var binDirs = []string{"/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin"}

// Server is a running PostgreSQL server owned by one test.
type Server struct {
	Port    int
	bin     string
	dataDir string
	sockDir string
	asUser  string // "postgres" when the test runs as root
	root    string
}

// Start initialises a cluster in a new temporary folder and starts it on a
// free 127.0.0.1 port, with scram-sha-256 password authentication. The
// server is stopped and its folder removed when the test ends. The test is
// skipped, with a message, when PostgreSQL is not installed.
func Start(t testing.TB) *Server {
	t.Helper()
	s := start(t, false)
	t.Cleanup(func() { s.Stop(t, "fast"); os.RemoveAll(s.root) })
	return s
}

var shared struct {
	mu  sync.Mutex
	srv *Server
}

// Shared returns the package's one server, started by the first test that
// asks; Main stops it. Each test should use a database of its own
// (CreateDB).
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv == nil {
		shared.srv = start(t, false)
	}
	return shared.srv
}

// Main runs the tests and then stops the shared server; call it from
// TestMain.
func Main(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

// StopShared stops the shared server, if a test started it, and removes
// its files: Main's cleanup, for a TestMain that has others too.
func StopShared() {
	if s := shared.srv; s != nil {
		s.command("pg_ctl", "-D", s.dataDir, "-m", "fast", "-w", "stop").Run()
		os.RemoveAll(s.root)
	}
}

// StartDurable is Start with PostgreSQL's durable defaults (fsync,
// synchronous_commit, full_page_writes on), for benchmarks; Start turns
// them off, which tests do not need and the machine's disk is spared.
func StartDurable(t testing.TB) *Server {
	t.Helper()
	s := start(t, true)
	t.Cleanup(func() { s.Stop(t, "fast"); os.RemoveAll(s.root) })
	return s
}

func start(t testing.TB, durable bool) *Server {
	t.Helper()
	bin := ""
	for _, d := range binDirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			bin = d
			break
		}
	}
	if bin == "" {
		t.Skip("PostgreSQL is not installed (Debian package postgresql; .ci/run installs it)")
	}
	s := &Server{bin: bin}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			t.Skip("running as root and there is no postgres user to run PostgreSQL as")
		}
		s.asUser = "postgres"
	}
	// t.TempDir is 0700 and owned by the test's user; the server runs as
	// postgres and needs a folder of its own.
	root, err := os.MkdirTemp("", "gocolytics-pg-")
	if err != nil {
		t.Fatal(err)
	}
	s.root = root
	s.dataDir, s.sockDir = filepath.Join(root, "data"), filepath.Join(root, "sock")
	pwFile := filepath.Join(root, "pw")
	for _, d := range []string{s.dataDir, s.sockDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(pwFile, []byte(Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s.asUser != "" {
		u, _ := user.Lookup(s.asUser)
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, p := range []string{root, s.dataDir, s.sockDir, pwFile} {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.run(t, "initdb", "-D", s.dataDir, "-U", "postgres", "--auth=scram-sha-256", "--pwfile="+pwFile, "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
	conf := "max_connections = 50\nshared_buffers = 128MB\n"
	if !durable {
		conf += "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
	}
	if err := os.WriteFile(filepath.Join(s.dataDir, "conf.d.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(s.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "include 'conf.d.conf'")
	f.Close()
	s.Port = freePort(t)
	s.StartAgain(t)
	return s
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// run runs one of PostgreSQL's programs as the server's user and fails the
// test when it fails.
func (s *Server) run(t testing.TB, prog string, args ...string) {
	t.Helper()
	if out, err := s.command(prog, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, out)
	}
}

func (s *Server) command(prog string, args ...string) *exec.Cmd {
	path := filepath.Join(s.bin, prog)
	if s.asUser != "" {
		return exec.Command("runuser", append([]string{"-u", s.asUser, "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

// StartAgain starts the server (again, after Stop) on the same port and
// waits until it accepts connections.
func (s *Server) StartAgain(t testing.TB) {
	t.Helper()
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s", s.Port, s.sockDir)
	s.run(t, "pg_ctl", "-D", s.dataDir, "-o", opts, "-l", filepath.Join(s.dataDir, "server.log"), "-w", "-t", "60", "start")
}

// Stop stops the server with pg_ctl's mode: "fast", or "immediate" for a
// crash-like stop.
func (s *Server) Stop(t testing.TB, mode string) {
	t.Helper()
	out, err := s.command("pg_ctl", "-D", s.dataDir, "-m", mode, "-w", "-t", "60", "stop").CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Is server running?") {
		t.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// URL is a libpq URL for the database name on this server, with the
// password in it.
func (s *Server) URL(dbname string) string {
	return fmt.Sprintf("postgres://postgres:%s@%s/%s?sslmode=disable", Password, s.Addr(), dbname)
}

// CreateDB creates a new, empty database and returns its URL. A database
// of that name left by an earlier run of the test (go test -count=N on the
// shared server) is dropped first.
func (s *Server) CreateDB(t testing.TB, name string) string {
	t.Helper()
	c := s.Conn(t, "postgres")
	id := pgx.Identifier{name}.Sanitize()
	if _, err := c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+id+" WITH (FORCE)"); err != nil {
		t.Fatalf("drop database %s: %v", name, err)
	}
	if _, err := c.Exec(context.Background(), "CREATE DATABASE "+id); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	return s.URL(name)
}

// Conn connects to a database of this server; the connection is closed
// when the test ends.
func (s *Server) Conn(t testing.TB, dbname string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.URL(dbname))
	if err != nil {
		t.Fatalf("connect to %s: %v", dbname, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// CPUTime is the CPU time (user and system) the server's processes have
// used so far: the postmaster and its children alive now (a backend that
// has exited no longer counts, so read it while the connection is open).
// Benchmarks report it per row, a figure other load on the machine
// barely moves.
func (s *Server) CPUTime() time.Duration {
	b, err := os.ReadFile(filepath.Join(s.dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	pids := []int{pid}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, task := range tasks {
		kids, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(kids)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
	}
	var ticks int64
	for _, p := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces): utime and
		// stime are the 14th and 15th fields of the line.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			ticks += u + st
		}
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
}
