// Package systemd talks to systemd: socket activation (listeners.go),
// sd_notify (notify.go) and the watchdog that pings only while the writer
// moves (watchdog.go); the unit files live beside them.
//
// Outside systemd (no LISTEN_FDS, no NOTIFY_SOCKET, no WATCHDOG_USEC) every
// function here is a no-op, so the same binary runs by hand, in a container
// or under any other supervisor.
package systemd

import (
	"errors"
	"fmt"
	"net"

	"github.com/coreos/go-systemd/v22/activation"
)

// ErrNoStreamSocket is returned when systemd passed file descriptors but none
// of them is a listening stream socket (for example a datagram socket).
var ErrNoStreamSocket = errors.New("systemd passed no listening stream socket")

// Listeners returns the listening sockets systemd passed to this process
// (LISTEN_FDS and LISTEN_PID, as set for a unit started by a .socket unit),
// in the order of the .socket unit's ListenStream= lines. It returns nil,
// nil when none were passed. It unsets LISTEN_PID, LISTEN_FDS and
// LISTEN_FDNAMES so that a child process never takes them for its own.
//
// Each listener is a *net.TCPListener or *net.UnixListener, so its File
// method gives a descriptor to hand on to a worker process.
func Listeners() ([]net.Listener, error) {
	all, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	if len(all) == 0 {
		return nil, nil
	}
	lns := make([]net.Listener, 0, len(all))
	for _, ln := range all {
		if ln != nil {
			lns = append(lns, ln)
		}
	}
	if len(lns) == 0 {
		return nil, fmt.Errorf("socket activation: %w (got %d descriptors)", ErrNoStreamSocket, len(all))
	}
	return lns, nil
}
