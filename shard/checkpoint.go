package shard

import (
	"encoding/binary"
	"os"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"
)

// DefaultCheckpointPages is how many WAL frames not yet copied into the
// database file make the checkpointer copy them (SQLite's own
// wal_autocheckpoint is 1000).
const DefaultCheckpointPages = 1000

// checkpointPoll is how often the checkpointer looks at the WAL.
const checkpointPoll = 100 * time.Millisecond

// checkpointer copies the WAL into the database file from a connection of
// its own, in a goroutine of its own, so that a checkpoint is not paid for
// by the group commit that happens to cross the threshold (SQLite's
// automatic checkpoint runs inside that COMMIT, and the requests of that
// group wait for it). It writes no rows; the writer stays the only
// connection that changes data. See DESIGN.md, "Checkpoints".
type checkpointer struct {
	conn  *sqlite3.SQLiteConn
	shm   string
	pages uint32
	stop  chan struct{}
	done  chan struct{}
	// runs counts the checkpoints it ran (for tests).
	runs atomic.Int64
}

func (db *DB) startCheckpointer() error {
	dc, err := (&sqlite3.SQLiteDriver{}).Open(dsn(db.path, db.opts))
	if err != nil {
		return err
	}
	cp := &checkpointer{
		conn:  dc.(*sqlite3.SQLiteConn),
		shm:   db.path + "-shm",
		pages: uint32(db.opts.WALAutocheckpoint),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	db.ckpt = cp
	go cp.run(db)
	return nil
}

func (cp *checkpointer) run(db *DB) {
	defer close(cp.done)
	t := time.NewTicker(checkpointPoll)
	defer t.Stop()
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for {
		select {
		case <-cp.stop:
			return
		case <-t.C:
		}
		if f == nil {
			var err error
			if f, err = os.Open(cp.shm); err != nil {
				continue
			}
		}
		if behind, ok := walBehind(f); !ok || behind < cp.pages {
			continue
		}
		if _, err := cp.conn.Exec("PRAGMA wal_checkpoint(PASSIVE)", nil); err != nil {
			// The writer's own TRUNCATE checkpoint (limitWAL) holds
			// the checkpoint lock: nothing to do now.
			if se, ok := err.(sqlite3.Error); !ok || se.Code != sqlite3.ErrBusy {
				db.logger.Warn("checkpoint failed", "err", err)
			}
			continue
		}
		cp.runs.Add(1)
	}
}

// walBehind reads, from the WAL index (the -shm file, in the host's byte
// order: https://sqlite.org/walformat.html), how many frames of the WAL
// are not yet copied into the database file: mxFrame of the index header
// minus nBackfill of the checkpoint information that follows it. The value
// may be a moment old; it only decides when to checkpoint.
func walBehind(f *os.File) (uint32, bool) {
	var b [100]byte
	if n, err := f.ReadAt(b[:], 0); n < len(b) || (err != nil && n < len(b)) {
		return 0, false
	}
	mxFrame := binary.NativeEndian.Uint32(b[16:])
	backfill := binary.NativeEndian.Uint32(b[96:])
	if backfill > mxFrame {
		return 0, true
	}
	return mxFrame - backfill, true
}

func (cp *checkpointer) close() error {
	if cp == nil {
		return nil
	}
	close(cp.stop)
	<-cp.done
	return cp.conn.Close()
}
