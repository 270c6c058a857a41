package forward

import (
	"context"
	"time"
)

// readAhead reads and prepares the next batch from SQLite while the one
// before it is copied to PostgreSQL, so that on two cores the reading and
// converting here overlap PostgreSQL's work on the COPY. It hands out at
// most three batches at a time (two being copied, one ready; see fly).
type readAhead struct {
	ready  chan *batch
	free   chan *batch
	errc   chan error
	cancel context.CancelFunc
	done   chan struct{}
}

// startReadAhead reads batches of rows after pos until stopped; after a
// batch that is not full (no backlog) it waits an interval before reading
// again.
func (f *Forwarder) startReadAhead(ctx context.Context, src *source, pos int64) *readAhead {
	ctx, cancel := context.WithCancel(ctx)
	r := &readAhead{ready: make(chan *batch), free: make(chan *batch, 3), errc: make(chan error, 1), cancel: cancel, done: make(chan struct{})}
	for range cap(r.free) {
		r.free <- newBatch(f.cfg.NodeID, f.cfg.EraseEventType, f.cfg.BatchRows)
	}
	go func() {
		defer close(r.done)
		for {
			var b *batch
			select {
			case b = <-r.free:
			case <-ctx.Done():
				return
			}
			if err := src.read(ctx, pos, f.cfg.BatchRows, b); err != nil {
				r.errc <- err
				return
			}
			if b.rows == 0 {
				r.free <- b
				select {
				case <-time.After(f.cfg.Interval):
					continue
				case <-ctx.Done():
					return
				}
			}
			pos = b.lastID
			select {
			case r.ready <- b:
			case <-ctx.Done():
				return
			}
			if b.rows < f.cfg.BatchRows {
				// Caught up: let rows gather for an interval, so that a
				// busy node sends one transaction a second, not one per
				// group commit (each PostgreSQL commit is an fsync).
				select {
				case <-time.After(f.cfg.Interval):
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return r
}

// stop ends the reading and waits for it.
func (r *readAhead) stop() {
	r.cancel()
	<-r.done
}
