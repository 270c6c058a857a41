package shard

import (
	"context"
	"database/sql/driver"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"
)

// Deletes (erasure, retention) run through the writer like inserts, so no
// second connection ever meets SQLITE_BUSY: a job is a series of chunks,
// each its own short transaction, and between two chunks the writer commits
// whatever ingest has queued. A chunk's size adapts to take about
// jobChunkTarget, so a delete of a million rows holds ingest up for tens of
// milliseconds at a time, never for the whole delete. See DESIGN.md.

// Bounds of a job's chunk, in rows, and the time one chunk aims at.
const (
	jobChunkMin    = 50
	jobChunkMax    = 20000
	jobChunkStart  = 500
	jobChunkTarget = 10 * time.Millisecond
)

// EventTables are the tables that hold event rows: every delete applies to
// each that exists. A table that holds rows before they reach event (a
// staging table) belongs here.
var EventTables = []string{"event", StagingTable}

// job is one delete under way. step deletes at most limit rows in the
// transaction the writer has begun and says whether there may be more.
type job struct {
	ctx     context.Context
	step    func(c *sqlite3.SQLiteConn, limit int) (n int64, more bool, err error)
	counter *atomic.Uint64
	deleted int64
	done    chan error
}

// submit hands j to the writer and waits until it has run to its end.
func (db *DB) submit(j *job) (int64, error) {
	if db.conn == nil {
		return 0, ErrNotOpen
	}
	j.done = make(chan error, 1)
	select {
	case db.jobs <- j:
	case <-db.exited:
		return 0, ErrClosed
	case <-j.ctx.Done():
		return 0, j.ctx.Err()
	}
	err := <-j.done
	return j.deleted, err
}

// Erase deletes every row of userID (of application, unless it is empty)
// from the event tables, through the writer in chunks, and returns how many
// rows it deleted once the last chunk has committed. On an error (or ctx
// ending) the chunks committed so far stay deleted, and the count says how
// many rows they held; erasing again deletes the rest.
func (db *DB) Erase(ctx context.Context, userID, application string) (int64, error) {
	n, err := db.submit(db.eraseJob(ctx, userID, application, 0))
	if err == nil && db.AfterErase != nil {
		err = db.AfterErase(ctx, userID, application)
	}
	return n, err
}

// eraseJob deletes the rows of userID (and application) whose id is below
// beforeID, or all of them when beforeID is 0.
func (db *DB) eraseJob(ctx context.Context, userID, application string, beforeID int64) *job {
	where := "user_id = ?"
	args := []driver.NamedValue{{Ordinal: 1, Value: userID}}
	if application != "" {
		where += " AND application = ?"
		args = append(args, driver.NamedValue{Ordinal: 2, Value: application})
	}
	if beforeID > 0 {
		where += fmt.Sprintf(" AND id < %d", beforeID)
	}
	j := &job{ctx: ctx, counter: &db.erased}
	j.step = func(c *sqlite3.SQLiteConn, limit int) (int64, bool, error) {
		var total int64
		more := false
		for _, table := range db.tables(c) {
			var n int64
			var err error
			if table == "event" {
				n, err = db.deleteEvents(c, where, args, limit)
			} else {
				var full bool
				n, full, err = deleteStaged(c, table, where, args, limit)
				more = more || full
			}
			if err != nil {
				return total, false, err
			}
			total += n
			more = more || n == int64(limit)
		}
		return total, more, nil
	}
	return j
}

// Prune deletes the rows whose time is before cutoff (retention), through
// the writer in chunks, and returns how many once the last has committed.
// It walks the table in id order, which is the order rows were written and
// so their time order, and stops at the first chunk that keeps a row: a
// database of millions of rows costs a few chunks when there is little to
// delete, never a scan of the whole table inside the writer.
func (db *DB) Prune(ctx context.Context, cutoff time.Time) (int64, error) {
	return db.prune(ctx, cutoff, 0)
}

// PruneThrough is Prune limited to the rows of event whose id is at most
// through (LOCAL_RETENTION_DAYS: only rows already forwarded to
// PostgreSQL); other event tables are left alone.
func (db *DB) PruneThrough(ctx context.Context, cutoff time.Time, through int64) (int64, error) {
	if through <= 0 {
		return 0, nil
	}
	return db.prune(ctx, cutoff, through)
}

// prune is Prune, and PruneThrough when through is above 0.
func (db *DB) prune(ctx context.Context, cutoff time.Time, through int64) (int64, error) {
	t := cutoff.UTC()
	if db.opts.LocalTime {
		t = cutoff.Local()
	}
	stamp := t.Format(TimeFormat)
	lo := int64(0)
	j := &job{ctx: ctx, counter: &db.pruned}
	j.step = func(c *sqlite3.SQLiteConn, limit int) (int64, bool, error) {
		var total int64
		first, ok, err := queryInt64(c, "SELECT min(id) FROM event WHERE id >= ?", lo)
		if err != nil {
			return 0, false, err
		}
		if !ok {
			// Nothing (more) in event: the staging table may still hold
			// old rows.
			if through > 0 {
				return 0, false, pruneStale(c, db.tables(c)[1:], stamp, through)
			}
			total, err := pruneOthers(c, db.tables(c)[1:], stamp)
			return total, false, err
		}
		hi := first + int64(limit)
		if through > 0 {
			if first > through {
				return 0, false, pruneStale(c, db.tables(c)[1:], stamp, through)
			}
			hi = min(hi, through+1)
		}
		n, err := db.deleteEvents(c, "id >= ? AND id < ? AND time < ?",
			[]driver.NamedValue{{Ordinal: 1, Value: first}, {Ordinal: 2, Value: hi}, {Ordinal: 3, Value: stamp}}, 0)
		if err != nil {
			return 0, false, err
		}
		total += n
		if through == 0 {
			n, err = pruneOthers(c, db.tables(c)[1:], stamp)
			total += n
			if err != nil {
				return total, false, err
			}
		}
		_, kept, err := queryInt64(c, "SELECT id FROM event WHERE id >= ? AND id < ? LIMIT 1", first, hi)
		if err != nil {
			return total, false, err
		}
		lo = hi
		if kept && through > 0 {
			return total, false, pruneStale(c, db.tables(c)[1:], stamp, through)
		}
		return total, !kept, nil
	}
	return db.submit(j)
}

// pruneOthers deletes the rows before stamp from tables (the staging ring:
// small, so a scan is cheap).
func pruneOthers(c *sqlite3.SQLiteConn, tables []string, stamp string) (int64, error) {
	var total int64
	for _, table := range tables {
		n, _, err := deleteStaged(c, table, "time < ?", []driver.NamedValue{{Ordinal: 1, Value: stamp}}, 0)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// deleteStaged deletes the rows where selects from table, a table of
// EventTables other than event (at most limit of them when limit > 0),
// and returns how many events that was and whether a delete reached the
// limit. In the staging ring the stale copies of merged events (at or
// below the watermark) are deleted with the staged rows but not counted:
// their events are in event, where they are deleted and counted.
func deleteStaged(c *sqlite3.SQLiteConn, table, where string, args []driver.NamedValue, limit int) (n int64, full bool, err error) {
	del := func(where string) (int64, error) {
		q := fmt.Sprintf("DELETE FROM %s WHERE %s", table, where)
		if limit > 0 {
			q = fmt.Sprintf("DELETE FROM %s WHERE rowid IN (SELECT rowid FROM %s WHERE %s LIMIT %d)", table, table, where, limit)
		}
		n, err := execRows(c, q, args)
		full = full || (limit > 0 && n == int64(limit))
		return n, err
	}
	if table != StagingTable {
		n, err = del(where)
		return n, full, err
	}
	if _, err := del(where + " AND id <= (SELECT merged FROM " + StagingMeta + ")"); err != nil {
		return 0, full, err
	}
	n, err = del(where + " AND id > (SELECT merged FROM " + StagingMeta + ")")
	return n, full, err
}

// pruneStale deletes from the staging ring the stale copies of the events
// up to through whose time is before stamp (PruneThrough: their rows in
// event are deleted; their copies must not outlive them).
func pruneStale(c *sqlite3.SQLiteConn, tables []string, stamp string, through int64) error {
	if !slices.Contains(tables, StagingTable) {
		return nil
	}
	_, err := execRows(c, "DELETE FROM "+StagingTable+" WHERE time < ? AND id <= ? AND id <= (SELECT merged FROM "+StagingMeta+")",
		[]driver.NamedValue{{Ordinal: 1, Value: stamp}, {Ordinal: 2, Value: through}})
	return err
}

// tables are the EventTables that exist, event first.
func (db *DB) tables(c *sqlite3.SQLiteConn) []string {
	out := []string{"event"}
	for _, t := range EventTables[1:] {
		if _, ok, err := queryInt64(c, "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", t); err == nil && ok {
			out = append(out, t)
		}
	}
	return out
}

func execRows(c *sqlite3.SQLiteConn, q string, args []driver.NamedValue) (int64, error) {
	res, err := c.ExecContext(context.Background(), q, args)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// queryInt64 runs a query of one integer; ok is false when it had no row
// or a NULL.
func queryInt64(c *sqlite3.SQLiteConn, q string, args ...any) (int64, bool, error) {
	nv := make([]driver.NamedValue, len(args))
	for i, a := range args {
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	rows, err := c.QueryContext(context.Background(), q, nv)
	if err != nil {
		return 0, false, err
	}
	defer rows.Close()
	dest := make([]driver.Value, 1)
	if err := rows.Next(dest); err != nil {
		return 0, false, nil
	}
	n, ok := dest[0].(int64)
	return n, ok, nil
}

// runJob runs one chunk of the first active job. It is called by the
// writer between group commits.
func (w *writer) runJob() {
	j := w.jobs[0]
	finish := func(err error) {
		j.done <- err
		w.jobs = w.jobs[1:]
	}
	if err := j.ctx.Err(); err != nil {
		finish(err)
		return
	}
	db := w.db
	start := time.Now()
	db.busySince.Store(start.UnixNano())
	n, more, err := w.jobChunk(j)
	took := time.Since(start)
	db.busySince.Store(0)
	if err != nil {
		finish(classify(err))
		return
	}
	j.deleted += n
	j.counter.Add(uint64(n))
	switch {
	case took < jobChunkTarget/2 && more:
		w.chunkRows = min(w.chunkRows*2, jobChunkMax)
	case took > jobChunkTarget*2:
		w.chunkRows = max(w.chunkRows/2, jobChunkMin)
	}
	if !more {
		finish(nil)
	}
}

// jobChunk runs one step of j in its own transaction.
func (w *writer) jobChunk(j *job) (int64, bool, error) {
	c := w.db.conn
	if _, err := c.Exec("BEGIN IMMEDIATE", nil); err != nil {
		return 0, false, err
	}
	n, more, err := j.step(c, w.chunkRows)
	if err != nil {
		return 0, false, rollback(c, err)
	}
	if _, err := c.Exec("COMMIT", nil); err != nil {
		return 0, false, rollback(c, err)
	}
	return n, more, nil
}

// failJobs ends every job with err (the writer is stopping).
func (w *writer) failJobs(err error) {
	for _, j := range w.jobs {
		j.done <- err
	}
	w.jobs = nil
}

// erasure is what an ERASE_EVENT_TYPE event asks for: the rows of its user
// and application written before it (ids below its own).
type erasure struct {
	user, app string
	before    int64
}

// queueErasures turns the committed transaction's erasure events into jobs.
// Nobody waits for them: the event's request was answered at its commit;
// the deletion follows in chunks, like any other job.
func (w *writer) queueErasures() {
	for _, e := range w.erasures {
		j := w.db.eraseJob(context.Background(), e.user, e.app, e.before)
		j.done = make(chan error, 1)
		w.jobs = append(w.jobs, j)
	}
	w.erasures = w.erasures[:0]
}

// findUnfinishedErasures finds, before the writer starts, the erasures that
// ERASE_EVENT_TYPE events asked for and a previous run did not finish: the
// request is committed with its event, but its deletion is a job of the
// writer's, lost if the process stops or crashes before its last chunk (or
// a chunk fails). A finished erasure leaves no row of the user and
// application older than the newest request event, so such a row means
// the erasure is still owed. The writer starts with these jobs. A failure
// here is logged, not fatal: the next start looks again.
func (db *DB) findUnfinishedErasures() {
	found, err := db.unfinishedErasures()
	if err != nil {
		db.logger.Error("looking for ERASE_EVENT_TYPE erasures left unfinished failed; the next start looks again", "err", classify(err))
		return
	}
	if len(found) > 0 {
		db.logger.Info("resuming ERASE_EVENT_TYPE erasures a previous run did not finish", "erasures", len(found))
	}
	db.resume = found
}

func (db *DB) unfinishedErasures() ([]erasure, error) {
	c := db.conn
	tables := db.tables(c)
	var newest []erasure
	for _, table := range tables {
		// The newest request of each user and application (the event_type
		// index finds them); staged ones are rare, the merge at Open
		// having emptied the staging table.
		rows, err := c.QueryContext(context.Background(), fmt.Sprintf("SELECT user_id, application, max(id) FROM %s WHERE event_type = ? GROUP BY user_id, application", table),
			[]driver.NamedValue{{Ordinal: 1, Value: db.opts.EraseEventType}})
		if err != nil {
			return nil, err
		}
		dest := make([]driver.Value, 3)
		for {
			if err := rows.Next(dest); err != nil {
				rows.Close()
				if err != io.EOF {
					return nil, err
				}
				break
			}
			e := erasure{user: asString(dest[0]), app: asString(dest[1])}
			e.before, _ = dest[2].(int64)
			newest = append(newest, e)
		}
	}
	latest := map[[2]string]int64{}
	for _, e := range newest {
		k := [2]string{e.user, e.app}
		latest[k] = max(latest[k], e.before)
	}
	var owed []erasure
	for k, before := range latest {
		for _, table := range tables {
			_, left, err := queryInt64(c, fmt.Sprintf("SELECT 1 FROM %s WHERE user_id = ? AND application = ? AND id < ? LIMIT 1", table), k[0], k[1], before)
			if err != nil {
				return nil, err
			}
			if left {
				owed = append(owed, erasure{user: k[0], app: k[1], before: before})
				break
			}
		}
	}
	return owed, nil
}
