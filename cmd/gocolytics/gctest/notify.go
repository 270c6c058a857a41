package gctest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// NotifySocket is a unixgram socket standing in for systemd's
// NOTIFY_SOCKET. It reads every notification as it arrives (a sender is
// never held up) and hands them out in order.
type NotifySocket struct {
	Path string
	conn *net.UnixConn

	mu    sync.Mutex
	queue []string
	more  chan struct{} // closed and replaced when a message arrives
}

// NewNotifySocket listens on a new socket, closed when the test ends.
func NewNotifySocket(tb testing.TB) *NotifySocket {
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
	s := &NotifySocket{Path: path, conn: conn, more: make(chan struct{})}
	tb.Cleanup(func() { conn.Close() })
	go s.read()
	return s
}

func (s *NotifySocket) read() {
	buf := make([]byte, 4096)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.queue = append(s.queue, string(buf[:n]))
		close(s.more)
		s.more = make(chan struct{})
		s.mu.Unlock()
	}
}

// Receive returns the next notification, waiting up to limit; false if none
// came.
func (s *NotifySocket) Receive(limit time.Duration) (string, bool) {
	m, err := s.next(nil, limit)
	return m, err == nil
}

// next takes the next notification off the queue, waiting up to limit; an
// error when the time is up or gone is closed first.
func (s *NotifySocket) next(gone <-chan struct{}, limit time.Duration) (string, error) {
	timeout := time.After(limit)
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			m := s.queue[0]
			s.queue = s.queue[1:]
			s.mu.Unlock()
			return m, nil
		}
		more := s.more
		s.mu.Unlock()
		select {
		case <-more:
		case <-gone:
			return "", errors.New("exited")
		case <-timeout:
			return "", fmt.Errorf("no notification within %v", limit)
		}
	}
}

// Next returns the next notification, failing the test after 20 s.
func (s *NotifySocket) Next(tb testing.TB) string {
	tb.Helper()
	m, err := s.next(nil, 20*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// Until reads notifications until one starts with prefix and returns it
// with every notification read on the way.
func (s *NotifySocket) Until(tb testing.TB, prefix string) (string, []string) {
	tb.Helper()
	var seen []string
	for {
		m := s.Next(tb)
		if strings.HasPrefix(m, prefix) {
			return m, seen
		}
		seen = append(seen, m)
	}
}

// WaitReady waits up to limit for READY=1, skipping what comes before, and
// returns that notification; an error if exited is closed first (the
// process is gone) or the time is up.
func (s *NotifySocket) WaitReady(exited <-chan struct{}, limit time.Duration) (string, error) {
	deadline := time.Now().Add(limit)
	for {
		m, err := s.next(exited, time.Until(deadline))
		if err != nil {
			return "", fmt.Errorf("waiting for READY=1: %w", err)
		}
		if strings.HasPrefix(m, "READY=1") {
			return m, nil
		}
	}
}
