package gctest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Key is the API key Start gives the server; NewEvent's events carry it.
const Key = "gctest-key"

// readyLimit bounds the wait for READY=1: with -race on a busy 2-core
// machine the supervisor and its workers take a few seconds.
const readyLimit = 30 * time.Second

// Server is the gocolytics binary running in a process of its own, ready:
// it has sent READY=1 (the database is open and the socket serves).
type Server struct {
	*Process
	Addr   string // host:port of the HTTP listener
	DBPath string
	Notify *NotifySocket // the NOTIFY_SOCKET it was given
}

// Start runs the binary with a database at dbPath (a new one in a temporary
// folder when empty), on 127.0.0.1 at a free port, with the API key Key, no
// rate limit and an empty .env file, followed by args (a later flag wins,
// so args may set --port or --rate-limit), and waits for READY=1.
func Start(tb testing.TB, dbPath string, args ...string) *Server {
	tb.Helper()
	if dbPath == "" {
		dbPath = filepath.Join(tb.TempDir(), "events.db")
	}
	port, fixed := portArg(args)
	for attempt := 1; ; attempt++ {
		if !fixed {
			port = FreePort(tb)
		}
		all := append([]string{"--host", "127.0.0.1", "--port", strconv.Itoa(port), "--sqlite-file-path", dbPath,
			"--api-keys", `["` + Key + `"]`, "--rate-limit", "off", "--env-file", EnvFile(tb, "")}, args...)
		cmd := exec.Command(Binary(tb), all...)
		cmd.Dir = tb.TempDir()
		s, err := startReady(tb, cmd, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dbPath)
		if err == nil {
			return s
		}
		// The free port was taken by someone else in the meantime: another.
		if !fixed && attempt < 3 && strings.Contains(s.Log(), "address already in use") {
			continue
		}
		tb.Fatalf("server: %v; its output:\n%s", err, s.Log())
	}
}

// StartCmd starts cmd, a run of the binary that Start cannot express (its
// own environment, extra files, socket activation), with NOTIFY_SOCKET
// added to its environment, and waits for READY=1. addr is where it will
// serve.
func StartCmd(tb testing.TB, cmd *exec.Cmd, addr, dbPath string) *Server {
	tb.Helper()
	s, err := startReady(tb, cmd, addr, dbPath)
	if err != nil {
		tb.Fatalf("server: %v; its output:\n%s", err, s.Log())
	}
	return s
}

func startReady(tb testing.TB, cmd *exec.Cmd, addr, dbPath string) (*Server, error) {
	tb.Helper()
	sock := NewNotifySocket(tb)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	// The last of a duplicated variable wins.
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+sock.Path)
	s := &Server{Process: Launch(tb, cmd), Addr: addr, DBPath: dbPath, Notify: sock}
	_, err := sock.WaitReady(s.Done(), readyLimit)
	return s, err
}

// URL is the server's address with path, for plain HTTP.
func (s *Server) URL(path string) string { return "http://" + s.Addr + path }

// portArg returns the last --port in args, if any.
func portArg(args []string) (int, bool) {
	port, found := 0, false
	for i, a := range args {
		v, ok := "", false
		switch {
		case (a == "--port" || a == "-port") && i+1 < len(args):
			v, ok = args[i+1], true
		case strings.HasPrefix(a, "--port="), strings.HasPrefix(a, "-port="):
			_, v, ok = strings.Cut(a, "=")
		}
		if ok {
			if n, err := strconv.Atoi(v); err == nil {
				port, found = n, true
			}
		}
	}
	return port, found
}
