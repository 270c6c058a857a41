package systemd_test

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
	"github.com/gocolytics/gocolytics/systemd"
)

func TestNotifier_OutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "1000000")
	n := systemd.New(nil)
	if n.Enabled() {
		t.Error("Enabled() = true without NOTIFY_SOCKET")
	}
	if got := n.WatchdogInterval(); got != 0 {
		t.Errorf("WatchdogInterval() = %v without NOTIFY_SOCKET, want 0", got)
	}
	n.Ready("up")
	n.Reloading()
	n.Status("x")
	n.Stopping("bye")
	stop := n.Start(func() string { return "" }, func() systemd.Progress { return systemd.Progress{} })
	stop()
}

func TestNotifier_Messages(t *testing.T) {
	sock := gctest.NewNotifySocket(t)
	t.Setenv("NOTIFY_SOCKET", sock.Path)
	t.Setenv("WATCHDOG_USEC", "")
	n := systemd.New(nil)
	if !n.Enabled() {
		t.Fatal("Enabled() = false with NOTIFY_SOCKET set")
	}

	n.Ready("listening on\n127.0.0.1:1")
	if got, want := sock.Next(t), "READY=1\nSTATUS=listening on 127.0.0.1:1"; got != want {
		t.Errorf("Ready sent %q, want %q", got, want)
	}

	n.Reloading()
	got := sock.Next(t)
	lines := strings.Split(got, "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("Reloading sent %q, want RELOADING=1 and MONOTONIC_USEC=", got)
	}
	if us, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64); err != nil || us <= 0 {
		t.Errorf("MONOTONIC_USEC is %q, want a positive number", lines[1])
	}

	n.Status("3 events")
	if got, want := sock.Next(t), "STATUS=3 events"; got != want {
		t.Errorf("Status sent %q, want %q", got, want)
	}
	n.Stopping("stopping")
	if got, want := sock.Next(t), "STOPPING=1\nSTATUS=stopping"; got != want {
		t.Errorf("Stopping sent %q, want %q", got, want)
	}
}

// watchdogHarness runs a Notifier's loop with a watchdog of 100 ms. Its status
// text counts the ticks, so that every tick shows up on the socket as a
// STATUS= line: pings can then be checked tick by tick, without timing.
// The test drives the writer's progress the loop sees.
type watchdogHarness struct {
	sock  *gctest.NotifySocket
	state atomic.Int32 // writerMoving, writerStuck or writerWaiting
	ticks atomic.Int64
	stop  func()
}

// States of the writer a watchdogHarness reports.
const (
	writerMoving  = iota // idle: nothing queued
	writerStuck          // one transaction under way for a minute
	writerWaiting        // events queued, and no transaction finishing
)

func startWatchdog(t *testing.T) *watchdogHarness {
	t.Helper()
	h := &watchdogHarness{sock: gctest.NewNotifySocket(t)}
	t.Setenv("NOTIFY_SOCKET", h.sock.Path)
	t.Setenv("WATCHDOG_USEC", "100000")
	t.Setenv("WATCHDOG_PID", "")
	n := systemd.New(nil)
	if got, want := n.WatchdogInterval(), 100*time.Millisecond; got != want {
		t.Fatalf("WatchdogInterval() = %v, want %v", got, want)
	}
	h.stop = n.Start(
		func() string { return "tick " + strconv.FormatInt(h.ticks.Add(1), 10) },
		func() systemd.Progress {
			switch h.state.Load() {
			case writerStuck:
				return systemd.Progress{Busy: time.Minute, Queued: 5, Done: 7}
			case writerWaiting:
				return systemd.Progress{Queued: 5, Done: 7}
			}
			return systemd.Progress{Queued: 0, Done: 7}
		})
	t.Cleanup(h.stop)
	return h
}

// pings reads the next k ticks and returns how many of them pinged.
func (h *watchdogHarness) pings(t *testing.T, k int) int {
	t.Helper()
	n := 0
	for range k {
		m, before := h.sock.Until(t, "STATUS=tick ")
		_ = m
		for _, b := range before {
			if b != "WATCHDOG=1" {
				t.Fatalf("unexpected notification %q", b)
			}
			n++
		}
	}
	return n
}

func TestNotifier_WatchdogPingsOnlyWhileTheWriterMoves(t *testing.T) {
	h := startWatchdog(t)
	// Every tick pings and then sends its status: after the first status,
	// each status has exactly one ping before it.
	h.pings(t, 1)
	if got := h.pings(t, 3); got != 3 {
		t.Errorf("healthy writer: %d pings in 3 ticks, want 3", got)
	}
	h.state.Store(writerStuck)
	h.pings(t, 1) // the tick under way may have pinged already
	if got := h.pings(t, 4); got != 0 {
		t.Errorf("stuck writer: %d pings in 4 ticks, want 0", got)
	}
	h.state.Store(writerMoving)
	h.pings(t, 1)
	if got := h.pings(t, 3); got != 3 {
		t.Errorf("writer moving again: %d pings in 3 ticks, want 3", got)
	}
}

// TestNotifier_WatchdogEventsWaiting: events queued while no transaction
// finishes (a writer blocked outside a transaction) withhold the pings once
// they have waited longer than half the watchdog, and pings resume when
// the writer moves again.
func TestNotifier_WatchdogEventsWaiting(t *testing.T) {
	h := startWatchdog(t)
	h.pings(t, 1)
	if got := h.pings(t, 2); got != 2 {
		t.Errorf("writer idle: %d pings in 2 ticks, want 2", got)
	}
	h.state.Store(writerWaiting)
	// The first ticks see the events waiting, not yet for long.
	h.pings(t, 3)
	if got := h.pings(t, 3); got != 0 {
		t.Errorf("events waiting: %d pings in 3 ticks, want 0", got)
	}
	h.state.Store(writerMoving)
	h.pings(t, 1)
	if got := h.pings(t, 2); got != 2 {
		t.Errorf("writer moving again: %d pings in 2 ticks, want 2", got)
	}
}
