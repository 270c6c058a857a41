// Package gctest is the one helper package for tests that drive the
// gocolytics binary: it builds the binary once per test process, starts it
// on 127.0.0.1 and waits for the READY=1 it sends systemd (never a log
// line), posts events, runs a load with a ledger of what was acknowledged,
// and reads what the database stored.
//
// It is not internal so that the tests in systemd/ use it too; nothing but
// tests imports it.
package gctest

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The binary, built once per test process by Binary.
var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error
)

// Binary builds cmd/gocolytics once per test process and returns its path.
func Binary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(build)
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

func build() {
	buildDir, buildErr = os.MkdirTemp("", "gocolytics-bin")
	if buildErr != nil {
		return
	}
	binPath = filepath.Join(buildDir, "gocolytics")
	out, err := exec.Command("go", "build", "-o", binPath, "github.com/gocolytics/gocolytics/cmd/gocolytics").CombinedOutput()
	if err != nil {
		buildErr = fmt.Errorf("go build: %w\n%s", err, out)
	}
}

// Main runs the tests, then the cleanups given (such as stopping a shared
// database server) and removes the binary Binary built. Call it from
// TestMain:
//
//	func TestMain(m *testing.M) { gctest.Main(m) }
//
// When every test may run (no -run, -skip or -list), it starts building
// the binary at once, so that the build overlaps the tests that run before
// the first one needs it.
func Main(m *testing.M, cleanups ...func()) {
	flag.Parse()
	built := make(chan struct{})
	if !filtered() {
		go func() { buildOnce.Do(build); close(built) }()
	} else {
		close(built)
	}
	code := m.Run()
	for _, c := range cleanups {
		c()
	}
	<-built // an early build still running would write into buildDir
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// filtered reports whether the go test flags select some tests only (or
// none, as -list and -run '^$' do), so that the binary may not be needed.
func filtered() bool {
	for _, name := range []string{"test.run", "test.skip", "test.list"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return true
		}
	}
	return false
}

// Process is a program a test started. Its standard output and error go
// to a file (unless the command already had its own), and it is killed, by
// its PID, if it still runs when the test ends.
type Process struct {
	Cmd     *exec.Cmd
	outPath string
	done    chan struct{}
	err     error // cmd.Wait's, set before done is closed
}

// Launch starts cmd as a Process.
func Launch(tb testing.TB, cmd *exec.Cmd) *Process {
	tb.Helper()
	p := &Process{Cmd: cmd, done: make(chan struct{})}
	// A file, not a pipe: what the process wrote before it said READY=1 is
	// in the file when the test reads it, and nothing waits on a pipe the
	// workers still hold.
	out, err := os.CreateTemp(tb.TempDir(), "output")
	if err != nil {
		tb.Fatal(err)
	}
	defer out.Close()
	p.outPath = out.Name()
	if cmd.Stdout == nil {
		cmd.Stdout = out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = out
	}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	tb.Cleanup(func() {
		select {
		case <-p.done:
		default:
			syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				tb.Errorf("process %d still running 10s after SIGKILL", cmd.Process.Pid)
			}
		}
	})
	return p
}

// PID is the process's id.
func (p *Process) PID() int { return p.Cmd.Process.Pid }

// Log is everything the process has written so far (to its standard
// output and error, unless the command had its own).
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.outPath)
	return string(b)
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Signal sends sig to the process.
func (p *Process) Signal(tb testing.TB, sig syscall.Signal) {
	tb.Helper()
	if err := syscall.Kill(p.PID(), sig); err != nil {
		tb.Fatalf("signal %v to %d: %v", sig, p.PID(), err)
	}
}

// Wait waits up to limit for the process to exit and returns its exit code
// (-1 when a signal ended it). Past limit it kills the process and fails
// the test.
func (p *Process) Wait(tb testing.TB, limit time.Duration) int {
	tb.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		syscall.Kill(p.PID(), syscall.SIGKILL)
		tb.Fatalf("process %d still running after %v; killed it. Its output:\n%s", p.PID(), limit, p.Log())
	}
	if st := p.Cmd.ProcessState; st != nil {
		return st.ExitCode()
	}
	tb.Fatalf("wait for process %d: %v", p.PID(), p.err)
	return -1
}

// Stop ends the process as systemd does: SIGTERM, then SIGKILL if it has
// not exited within 20 s. It fails the test unless the exit code is 0.
func (p *Process) Stop(tb testing.TB) {
	tb.Helper()
	p.Signal(tb, syscall.SIGTERM)
	if code := p.Wait(tb, 20*time.Second); code != 0 {
		tb.Errorf("exit code %d after SIGTERM; output:\n%s", code, p.Log())
	}
}

// Kill ends the process with SIGKILL and waits for it.
func (p *Process) Kill(tb testing.TB) {
	tb.Helper()
	p.Signal(tb, syscall.SIGKILL)
	p.Wait(tb, 10*time.Second)
}
