package main

import (
	"fmt"
	"log/slog"

	"github.com/gocolytics/gocolytics/ingest"
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
