package systemd

import (
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// DefaultStatusEvery is how often the STATUS= line is sent again when it has
// not changed.
const DefaultStatusEvery = 5 * time.Second

// Notifier sends sd_notify messages (READY=1, STATUS=, RELOADING=1,
// STOPPING=1, WATCHDOG=1) to the socket systemd names in NOTIFY_SOCKET.
// Without NOTIFY_SOCKET every method is a no-op. Its methods are safe for
// concurrent use; messages go out in the order the calls were made.
type Notifier struct {
	logger   *slog.Logger
	enabled  bool
	watchdog time.Duration

	// StatusEvery is how often Start's loop sends STATUS= when the text has
	// not changed; a changed text is sent at the next tick. Set before Start.
	StatusEvery time.Duration

	mu       sync.Mutex
	stopping bool
	lastErr  string
}

// New reads NOTIFY_SOCKET and WATCHDOG_USEC (and WATCHDOG_PID) from the
// environment. It does no I/O.
func New(logger *slog.Logger) *Notifier {
	if logger == nil {
		logger = slog.Default()
	}
	n := &Notifier{
		logger:      logger.With("component", "systemd"),
		enabled:     os.Getenv("NOTIFY_SOCKET") != "",
		StatusEvery: DefaultStatusEvery,
	}
	if n.enabled {
		wd, err := daemon.SdWatchdogEnabled(false)
		if err != nil {
			n.logger.Warn("ignoring the watchdog setting", "err", err)
		}
		n.watchdog = wd
	}
	return n
}

// Enabled reports whether systemd listens for notifications.
func (n *Notifier) Enabled() bool { return n.enabled }

// WatchdogInterval is systemd's WatchdogSec=, zero when there is no watchdog.
func (n *Notifier) WatchdogInterval() time.Duration { return n.watchdog }

// Ready tells systemd that the service is up (or done reloading), with a
// status line.
func (n *Notifier) Ready(status string) {
	n.send(daemon.SdNotifyReady + "\nSTATUS=" + oneLine(status))
}

// Reloading tells systemd that the configuration is being reloaded; Ready
// must follow. MONOTONIC_USEC lets systemd match it to its reload job.
func (n *Notifier) Reloading() {
	n.send(daemon.SdNotifyReloading + "\n" + strings.TrimSuffix(daemon.SdNotifyMonotonicUsec(), "\n"))
}

// Status replaces the one-line status that `systemctl status` shows.
func (n *Notifier) Status(status string) {
	n.send("STATUS=" + oneLine(status))
}

// Stopping tells systemd that shutdown has begun. No watchdog ping goes out
// after it.
func (n *Notifier) Stopping(status string) {
	n.mu.Lock()
	n.stopping = true
	n.mu.Unlock()
	n.send(daemon.SdNotifyStopping + "\nSTATUS=" + oneLine(status))
}

// Start runs the status refresh and, when systemd set a watchdog, the
// watchdog pings, until the returned stop is called (stop waits for the loop
// to end). status gives the current one-line status; progress tells whether
// the writer is moving (see Progress). Without NOTIFY_SOCKET it starts
// nothing.
func (n *Notifier) Start(status func() string, progress func() Progress) (stop func()) {
	if !n.enabled {
		return func() {}
	}
	tick := n.StatusEvery
	if tick <= 0 {
		tick = DefaultStatusEvery
	}
	if n.watchdog > 0 && n.watchdog/2 < tick {
		tick = n.watchdog / 2
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(tick)
		defer t.Stop()
		stall := stallDetector{limit: n.watchdog / 2}
		var lastStatus string
		var lastSent time.Time
		withheld := false
		for {
			select {
			case <-quit:
				return
			case now := <-t.C:
				if n.watchdog > 0 {
					switch {
					case !stall.stalled(progress(), now):
						n.ping()
						withheld = false
					case !withheld:
						n.logger.Error("withholding watchdog pings: systemd will restart the service if this lasts",
							"why", "the database writer is making no progress", "watchdog", n.watchdog.String())
						withheld = true
					}
				}
				if s := status(); s != lastStatus || now.Sub(lastSent) >= n.StatusEvery {
					n.Status(s)
					lastStatus, lastSent = s, now
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(quit) })
		<-done
	}
}

func (n *Notifier) ping() {
	n.mu.Lock()
	stopping := n.stopping
	n.mu.Unlock()
	if !stopping {
		n.send(daemon.SdNotifyWatchdog)
	}
}

// send sends one datagram. Failures are logged, each distinct one once:
// systemd going away must not flood the log every few seconds.
func (n *Notifier) send(state string) {
	if !n.enabled {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	_, err := daemon.SdNotify(false, state)
	if err != nil {
		if msg := err.Error(); msg != n.lastErr {
			n.lastErr = msg
			n.logger.Warn("sd_notify failed", "err", err)
		}
		return
	}
	n.lastErr = ""
}

// oneLine keeps a status on one line: a newline would start a new
// notification field.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
