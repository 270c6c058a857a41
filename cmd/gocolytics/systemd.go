package main

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/systemd"
)

// listen returns the socket systemd passed (socket activation), or else a
// new one bound to HOST:PORT. A passed socket wins over HOST and PORT.
func listen(cfg *Config, logger *slog.Logger) (net.Listener, error) {
	lns, err := systemd.Listeners()
	if err != nil {
		return nil, err
	}
	switch len(lns) {
	case 0:
		return net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	case 1:
		logger.Info("using the socket systemd passed; HOST and PORT are not used", "addr", lns[0].Addr().String())
		return lns[0], nil
	}
	for _, ln := range lns {
		ln.Close()
	}
	return nil, fmt.Errorf("systemd passed %d sockets; give the .socket unit one ListenStream= (ListenStream=8080 takes IPv4 and IPv6 both)", len(lns))
}

// status is the one-line summary systemd shows in `systemctl status`.
func status(ln net.Listener, db *shard.DB) string {
	st := db.Stats()
	s := fmt.Sprintf("listening on %s; %d events stored since start; %d queued", ln.Addr(), st.EventsStored, st.QueuedEvents)
	if st.LastError != nil {
		s += fmt.Sprintf("; last commit failed: %v", st.LastError)
	}
	return s
}

// writerProgress tells the watchdog whether the database writer is moving.
func writerProgress(db *shard.DB) func() systemd.Progress {
	return func() systemd.Progress {
		st := db.Stats()
		return systemd.Progress{Busy: st.Stuck, Queued: st.QueuedEvents, Done: st.Commits + st.FailedCommits}
	}
}
