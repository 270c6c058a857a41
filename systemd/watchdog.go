package systemd

import "time"

// Progress is what the watchdog looks at to decide whether the database
// writer is alive. cmd/gocolytics fills it from the writer's counters.
type Progress struct {
	// Busy is how long the transaction under way has taken; zero when the
	// writer is idle or between transactions.
	Busy time.Duration
	// Queued is the number of events waiting for their commit, those of the
	// transaction under way included.
	Queued int64
	// Done counts the transactions finished, committed or failed.
	Done uint64
}

// stallDetector decides when to withhold watchdog pings. The writer counts
// as stalled when one transaction has taken longer than limit (half of
// WatchdogSec), or when events have been waiting longer than limit without
// any transaction finishing (a writer blocked outside a transaction). A
// failing commit is progress: it answers its requests with 503, and a
// restart would not help.
//
// With pings every WatchdogSec/2, a transaction shorter than WatchdogSec/2
// never costs a ping, and a writer stuck for WatchdogSec plus at most half
// of it is killed by systemd (WatchdogSignal=, SIGABRT) and restarted
// (Restart=on-failure).
type stallDetector struct {
	limit        time.Duration
	lastDone     uint64
	waitingSince time.Time
}

func (d *stallDetector) stalled(p Progress, now time.Time) bool {
	if p.Busy > d.limit {
		return true
	}
	if p.Queued <= 0 || p.Done != d.lastDone {
		d.lastDone, d.waitingSince = p.Done, time.Time{}
		return false
	}
	if d.waitingSince.IsZero() {
		d.waitingSince = now
		return false
	}
	return now.Sub(d.waitingSince) > d.limit
}
