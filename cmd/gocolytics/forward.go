package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/forward"
)

// startForwarder starts the PostgreSQL forwarder when POSTGRES_URL is set
// (nil otherwise), after the database is open, and hooks it into /metrics
// and /healthz through the ingest configuration.
func startForwarder(cfg *Config, logger *slog.Logger, icfg *ingest.Config) (*forward.Forwarder, error) {
	if cfg.Forward.PostgresURL == "" {
		return nil, nil
	}
	f := forward.New(cfg.Forward, logger)
	if err := f.Start(); err != nil {
		return nil, fmt.Errorf("start forwarding to postgresql: %w", err)
	}
	if icfg != nil {
		if icfg.Metrics != nil {
			icfg.Metrics.Add(f.Metrics())
		}
		icfg.HealthNotes = append(icfg.HealthNotes, ingest.HealthNote{Name: "forwarding", Check: f.Behind})
	}
	logger.Info("forwarding to postgresql is on", "node_id", f.NodeID())
	return f, nil
}

// forwardAsk opens a worker's call (shard/link/PROTOCOL.md) asking the
// supervisor, where the forwarder runs, how forwarding goes: the answer is
// empty when it is fine, else why it is behind (Forwarder.Behind).
const forwardAsk byte = 'F'

// forwardNote is a worker's /healthz note on the supervisor's forwarder,
// asked through call (link.Client's Call).
func forwardNote(call func(question []byte) ([]byte, error)) ingest.HealthNote {
	return ingest.HealthNote{Name: "forwarding", Check: func() error {
		a, err := call([]byte{forwardAsk})
		if err != nil {
			return fmt.Errorf("ask the supervisor: %w", err)
		}
		if len(a) > 0 {
			return errors.New(string(a))
		}
		return nil
	}}
}

// answerForward answers a worker's forwardAsk for the forwarder f.
func answerForward(f *forward.Forwarder) []byte {
	if f == nil {
		return []byte("forwarding is off in the supervisor")
	}
	if err := f.Behind(); err != nil {
		return []byte(err.Error())
	}
	return nil
}

// forwardStatus is the forwarder's part of the systemd status line.
func forwardStatus(f *forward.Forwarder) string {
	if f == nil {
		return ""
	}
	s := f.Status()
	state := "connected"
	if !s.Connected {
		state = "not connected"
	}
	return fmt.Sprintf("; postgresql %s, lag %d events (%.0fs)", state, s.LagEvents, s.LagSeconds)
}

// localRetentionEvery is how often LOCAL_RETENTION_DAYS deletes rows.
const localRetentionEvery = time.Hour

// startLocalRetention deletes, at start and then hourly, local rows older
// than LOCAL_RETENTION_DAYS that the forwarder has copied to PostgreSQL,
// through the writer in chunks. It keeps the newest row whatever its age,
// so that SQLite never gives a new row an id that was forwarded already.
// The returned function stops it and waits.
func startLocalRetention(cfg *Config, db *shard.DB, fwd *forward.Forwarder, logger *slog.Logger) func() {
	if fwd == nil || cfg.LocalRetentionDays <= 0 {
		return func() {}
	}
	logger = logger.With("component", "local_retention")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			st := fwd.Status()
			through := min(st.Position, st.Position+st.LagEvents-1) // the newest row stays
			cutoff := time.Now().AddDate(0, 0, -cfg.LocalRetentionDays)
			n, err := db.PruneThrough(ctx, cutoff, through)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				logger.Error("deleting forwarded old rows failed; trying again in an hour", "deleted", n, "err", err)
			case n > 0:
				logger.Info("deleted forwarded old rows", "deleted", n, "through_id", through, "older_than", cutoff.UTC().Format(time.RFC3339))
			}
			// Sooner while the position is not known yet (PostgreSQL not
			// reached since start: nothing is deleted then, and looking
			// again costs a status read) or a backlog is still being
			// forwarded.
			wait := localRetentionEvery
			switch {
			case !st.Connected || st.Position == 0:
				wait = time.Second
			case st.LagEvents > 0:
				wait = time.Minute
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }
}
