package workers

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
)

// WorkerProcess is this process, when a Supervisor started it as a worker:
// it serves HTTP like a single-process server, but commits through its link
// to the supervisor (Conn, spoken by shard/link) and spends the
// supervisor's rate budget.
type WorkerProcess struct {
	// Number is the worker's number, from 1, for its logs.
	Number int
	listen string
}

// ThisWorker says whether this process is a worker, and which.
func ThisWorker() (WorkerProcess, bool) {
	v, ok := os.LookupEnv(WorkerEnv)
	if !ok {
		return WorkerProcess{}, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return WorkerProcess{}, false
	}
	return WorkerProcess{Number: n, listen: os.Getenv(workerListenEnv)}, true
}

// Listen returns the socket this worker serves: the one the supervisor
// passed on (socket activation), or its own SO_REUSEPORT socket on the
// supervisor's address.
func (w WorkerProcess) Listen() (net.Listener, error) {
	if w.listen == "fd" {
		f := os.NewFile(listenerFD, "listener")
		defer f.Close()
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, fmt.Errorf("inherited listener: %w", err)
		}
		return ln, nil
	}
	if w.listen == "" {
		return nil, fmt.Errorf("%s is not set: no address to bind", workerListenEnv)
	}
	lc := net.ListenConfig{Control: reusePort}
	return lc.Listen(context.Background(), "tcp", w.listen)
}

// Conn is this worker's end of the socketpair to the supervisor, over
// which it speaks the link protocol (shard/link's Dial says hello; from
// then on the supervisor counts this worker as serving).
func (w WorkerProcess) Conn() (net.Conn, error) {
	f := os.NewFile(linkFD, "link")
	defer f.Close()
	conn, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("link to the supervisor: %w", err)
	}
	return conn, nil
}
