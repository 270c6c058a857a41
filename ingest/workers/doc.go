// Package workers owns the worker processes of WORKERS >= 2: the
// Supervisor that re-executes this binary once per worker, restarts the
// ones that die (with backoff) and stops them in order; the worker side
// (ThisWorker: the socket to serve and the connection to the supervisor);
// and the port they share (ReservePort, SO_REUSEPORT, Pdeathsig). It knows
// nothing of HTTP or SQLite: the supervisor hands each worker's connection
// to a function that serves the link (shard/link).
package workers
