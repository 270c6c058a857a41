package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
	"github.com/gocolytics/gocolytics/shard"
)

// TestExport_SIGTERMWhileBlocked: gocolytics export whose output is a pipe
// nobody reads (a consumer that hung) blocks in a write; SIGTERM must still
// end it, with a non-zero exit and a message, instead of leaving it
// waiting for ever.
func TestExport_SIGTERMWhileBlocked(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.db")
	evs := make([]shard.Event, 5000) // about 700 KB of CSV: more than a pipe holds
	for i := range evs {
		evs[i] = gctest.NewEvent(fmt.Sprintf("sigterm-%d", i)).Row(time.Now())
	}
	writeDatabase(t, path, evs)

	fifo := filepath.Join(t.TempDir(), "pipe")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// The read end, opened but never read: the export fills the pipe and
	// blocks.
	rd, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	p := gctest.Launch(t, exec.Command(gctest.Binary(t), "export", "--env-file", gctest.EnvFile(t, ""), "--sqlite-file-path", path, "--format", "csv", "--output", fifo))
	size, _, errno := syscall.Syscall(syscall.SYS_FCNTL, rd.Fd(), 1032 /* F_GETPIPE_SZ */, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	gctest.WaitFor(t, func() bool {
		var n int32
		syscall.Syscall(syscall.SYS_IOCTL, rd.Fd(), syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
		return uintptr(n) >= size
	}, "the export to fill the pipe")
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 10*time.Second); code == 0 {
		t.Errorf("export ended by SIGTERM exited 0; its output:\n%s", p.Log())
	}
	if log := p.Log(); !strings.Contains(log, "stopped by a signal") {
		t.Errorf("export ended by SIGTERM says %q, want that a signal stopped it", log)
	}
}
