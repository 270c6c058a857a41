package shard

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// Errors Health returns besides ErrClosed.
var (
	ErrNotOpen        = errors.New("database is not open")
	ErrWriterStopped  = errors.New("writer has stopped")
	ErrWriterStuck    = errors.New("writer is stuck")
	ErrLastCommit     = errors.New("last commit failed")
	ErrDatabaseAbsent = errors.New("database file is missing")
)

// stuckAfter is how long one transaction may take before Health calls the
// writer stuck: twice the busy timeout, which a commit may spend waiting
// for another process's lock.
func (db *DB) stuckAfter() time.Duration {
	return 2 * db.opts.BusyTimeout
}

// Health reports whether events can be committed now: nil when the
// database is open, its file is in place, the writer runs, no transaction
// has been under way for longer than twice the busy timeout, and the last
// commit succeeded. Otherwise it says why not. A failed commit keeps the
// database unhealthy until a later commit succeeds.
func (db *DB) Health() error {
	q := &db.queues[0]
	q.mu.Lock()
	closed := q.closed
	q.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case db.conn == nil:
		return ErrNotOpen
	}
	select {
	case <-db.exited:
		return ErrWriterStopped
	default:
	}
	if _, err := os.Stat(db.path); err != nil {
		return fmt.Errorf("%w: %v", ErrDatabaseAbsent, err)
	}
	st := db.Stats()
	if st.Stuck > db.stuckAfter() {
		return fmt.Errorf("%w: a transaction has been under way for %s", ErrWriterStuck, st.Stuck.Round(time.Second))
	}
	if st.LastError != nil {
		return fmt.Errorf("%w: %w", ErrLastCommit, st.LastError)
	}
	return nil
}
