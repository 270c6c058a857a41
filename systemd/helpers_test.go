package systemd_test

import (
	"net"
	"os"
	"os/exec"
	"testing"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
)

// TestMain removes the binary gctest built once the tests are done.
func TestMain(m *testing.M) { gctest.Main(m) }

// startActivated execs the binary with ln passed as fd 3, LISTEN_FDS=1 and
// LISTEN_PID set to the binary's own pid (sh sets it to $$ and then execs,
// which keeps the pid), as systemd does for a socket-activated service. env
// is the whole environment besides PATH; dir is the working directory.
func startActivated(tb testing.TB, ln *net.TCPListener, dir string, env []string, args ...string) *gctest.Process {
	tb.Helper()
	f, err := ln.File()
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	script := `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=gocolytics.socket exec "$0" "$@"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, gctest.Binary(tb)}, args...)...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.ExtraFiles = []*os.File{f}
	return gctest.Launch(tb, cmd)
}

// tcpListener listens on a free port of 127.0.0.1, for the binary to be
// handed as systemd hands a socket unit's.
func tcpListener(tb testing.TB) *net.TCPListener {
	tb.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	return ln
}

// event is the event marked marker, sent with key.
func event(marker, key string) string { return gctest.NewEvent(marker).WithKey(key).JSON() }

// stored is how many events whose marker starts with prefix the database
// at dbPath holds.
func stored(tb testing.TB, dbPath, prefix string) int {
	tb.Helper()
	n := 0
	gctest.EachMarker(tb, dbPath, func(m string) {
		if len(m) >= len(prefix) && m[:len(prefix)] == prefix {
			n++
		}
	})
	return n
}
