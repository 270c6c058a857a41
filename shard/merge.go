package shard

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/mattn/go-sqlite3"
)

// StagingTable is the ring the group commit writes to when merging is on
// (see DESIGN.md, "Staging and merge"): the columns of event and a slot,
// its rowid, which is the event's id modulo the ring's size, so that a
// commit overwrites rows already merged instead of appending pages that a
// merge later frees. The rows an event's id is above the merged watermark
// (StagingMeta) of are staged; the others are stale copies of rows of
// event, overwritten in turn. Every write job that deletes events (erasure,
// retention) must delete from it too, in the same transaction: stale copies
// included.
const StagingTable = "event_ring"

// StagingMeta is the one-row table of the ring's merged watermark (every
// event whose id is at most merged is in event, or deleted) and its size.
// The merge moves it in the transaction that inserts into event.
const StagingMeta = "event_ring_merged"

// StagedSQL counts the events staged (committed, not yet merged).
const StagedSQL = "SELECT count(*) FROM " + StagingTable + " WHERE id > (SELECT merged FROM " + StagingMeta + ")"

// oldStagingTable is the staging table of the versions before the ring
// (rowid = id, rows deleted by the merge): Open moves its rows into event
// and drops it.
const oldStagingTable = "event_staging"

// ViewAll is a view of event and the rows still staged, with the ids they
// will keep: what a reader that must see the newest second reads.
const ViewAll = "event_all"

// DefaultRingSlots is the ring's size for a new database: a few times the
// events a merge moves under a load of single events (about a second's),
// some 5 MB of rows. A group commit that does not fit in what the ring has
// free merges first; a group larger than the whole ring doubles it (when
// nothing is staged).
const DefaultRingSlots = 16384

// maxRingSlots bounds the growth of a ring that a load fills faster than
// the merge interval (batches of events: each forced merge would move a
// ring's worth, fewer events than the interval's, and share fewer index
// leaves): a ring of MergeRows events and more.
const maxRingSlots = 1 << 16

// Defaults of the merge.
const (
	// DefaultMergeInterval is how long an event waits at most in the
	// staging table under load before it is merged into event.
	DefaultMergeInterval = time.Second
	// DefaultMergeRows merges as soon as this many events are staged.
	DefaultMergeRows = 50000
	// DefaultMergeMaxRows caps the events one merge transaction moves.
	DefaultMergeMaxRows = 50000
)

// The rows of one bounded merge: the first merge moves mergeChunkStart
// events at most; each merge of a full chunk measures its rate and sizes the
// next one to take MergeBudget, between mergeMinRows and MergeMaxRows. The
// floor keeps a slow moment (the machine busy with something else) from
// cutting merges into pieces so small that each writes an index leaf per
// event again, the cost the staging table is there to avoid.
const (
	mergeChunkStart = 10000
	mergeMinRows    = 5000
)

// mergeQuietRows and the quiet interval adapt the merge to the load: while
// fewer than mergeQuietRows events are staged, a merge waits
// Options.MergeQuietInterval (5 × MergeInterval unless set). A merge writes
// a page of each small index (event_type, application, version, platform)
// and their parents whatever it moves: a quiet game's trickle merged every
// second would pay several pages a merged event for them; a longer quiet
// interval shares them among more events (DESIGN.md, "Staging and merge").
// The events are in event_all meanwhile.
const (
	mergeQuietRows   = 1000
	mergeQuietFactor = 5
)

// mergeColumns are event's columns in its own order, for the view and the merge.
const mergeColumns = `event_type, application, version, platform, user_id, session_id, value, id, time`

const createStaging = `
CREATE TABLE IF NOT EXISTS event_ring (
	slot INTEGER PRIMARY KEY,
	event_type VARCHAR NOT NULL,
	application VARCHAR NOT NULL,
	version VARCHAR NOT NULL,
	platform VARCHAR NOT NULL,
	user_id VARCHAR NOT NULL,
	session_id VARCHAR NOT NULL,
	value JSON NOT NULL,
	id INTEGER NOT NULL,
	time DATETIME NOT NULL
);
CREATE TABLE IF NOT EXISTS event_ring_merged (
	one INTEGER PRIMARY KEY CHECK (one = 1),
	merged INTEGER NOT NULL,
	slots INTEGER NOT NULL
);
INSERT OR IGNORE INTO event_ring_merged (one, merged, slots)
	VALUES (1, (SELECT coalesce(max(id), 0) FROM event), ` + "%d" + `);
CREATE VIEW IF NOT EXISTS event_all AS
	SELECT ` + mergeColumns + ` FROM event
	UNION ALL
	SELECT ` + mergeColumns + ` FROM event_ring WHERE id > (SELECT merged FROM event_ring_merged);
`

// stageSQL takes the eight columns of insertSQL in the same order, then the
// id, which the writer assigns so that a staged event keeps its id, then
// the slot. It overwrites the slot's stale row: without secondary indexes
// SQLite rewrites the cell in its leaf.
const stageSQL = `INSERT OR REPLACE INTO event_ring (event_type, application, version, platform, user_id, session_id, value, time, id, slot) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// maxEventIDSQL is the highest id in event: the next event's id is above
// it and above every staged id, as INTEGER PRIMARY KEY would pick it.
const maxEventIDSQL = `SELECT coalesce(max(id), 0) FROM event`

// merger is the writer's staging state. Only the writer goroutine uses it.
type merger struct {
	stage    driver.StmtExecContext
	maxEvent driver.StmtQueryContext
	// slots is the ring's size; merged is the watermark as committed, hi
	// the highest id committed to the ring (merged when nothing is
	// staged). The staged events have ids in (merged, hi], hi - merged <=
	// slots, each at slot id % slots.
	slots, merged, hi int64
	// grow says the ring came round faster than the merge interval: the
	// next commit on an empty ring doubles it (room).
	grow bool
	// since is when the oldest staged event was committed.
	since time.Time
	// chunk is the most events the next merge moves (bounded merges).
	chunk int
	// failures counts merges failed in a row, for the log.
	failures    int
	lastFailLog time.Time
}

// errRingFull is what a group commit returns when its events do not fit
// in the ring beside the staged ones: the writer merges and tries again.
var errRingFull = errors.New("staging ring full")

// openStaging creates the ring, its watermark and the view if they are
// missing (moving the rows of an older staging table into event),
// prepares the statements and merges whatever a previous run left staged.
func (db *DB) openStaging() error {
	c := db.conn
	if err := upgradeStaging(c); err != nil {
		return fmt.Errorf("move the old staging table's rows into event: %w", err)
	}
	if _, err := c.Exec(fmt.Sprintf(createStaging, DefaultRingSlots), nil); err != nil {
		return fmt.Errorf("create staging table: %w", err)
	}
	st, err := c.Prepare(stageSQL)
	if err != nil {
		return fmt.Errorf("prepare staging insert: %w", err)
	}
	mx, err := c.Prepare(maxEventIDSQL)
	if err != nil {
		st.Close()
		return fmt.Errorf("prepare next id: %w", err)
	}
	m := &merger{stage: st.(driver.StmtExecContext), maxEvent: mx.(driver.StmtQueryContext), chunk: mergeChunkStart}
	db.merge = m
	if err := m.readRing(c); err != nil {
		return fmt.Errorf("read staging table: %w", err)
	}
	if m.staged() > 0 {
		m.since = time.Now()
		n, err := db.mergeAll()
		if err != nil {
			return fmt.Errorf("merge events staged by the previous run: %w", err)
		}
		db.logger.Info("merged events staged by the previous run", "events", n)
	}
	return nil
}

// readRing reads the watermark and the ring's size, and finds the staged
// events (one scan of the ring, at Open).
func (m *merger) readRing(c *sqlite3.SQLiteConn) error {
	rows, err := c.Query("SELECT merged, slots, (SELECT coalesce(max(id), 0) FROM event_ring WHERE id > merged) FROM event_ring_merged", nil)
	if err != nil {
		return err
	}
	defer rows.Close()
	dest := make([]driver.Value, 3)
	if err := rows.Next(dest); err != nil {
		return err
	}
	m.merged, _ = dest[0].(int64)
	m.slots, _ = dest[1].(int64)
	m.hi, _ = dest[2].(int64)
	if m.slots <= 0 {
		return fmt.Errorf("%w: %s.slots is %d", ErrUnknownSchema, StagingMeta, m.slots)
	}
	m.hi = max(m.hi, m.merged)
	return nil
}

// staged is how many events the ring holds: ids merged+1 to hi.
func (m *merger) staged() int { return int(m.hi - m.merged) }

// upgradeStaging moves the rows of a staging table of the versions before
// the ring into event, in id order with their ids, and drops it and the
// view that reads it, in one transaction. It does nothing when there is no
// such table.
func upgradeStaging(c *sqlite3.SQLiteConn) error {
	if _, ok, err := queryInt64(c, "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", oldStagingTable); err != nil || !ok {
		return err
	}
	if _, err := c.Exec("BEGIN IMMEDIATE", nil); err != nil {
		return err
	}
	if _, err := insertStaged(c, "FROM "+oldStagingTable+" ORDER BY id"); err != nil {
		return rollback(c, err)
	}
	for _, q := range []string{"DROP VIEW IF EXISTS " + ViewAll, "DROP TABLE " + oldStagingTable, "COMMIT"} {
		if _, err := c.Exec(q, nil); err != nil {
			return rollback(c, err)
		}
	}
	return nil
}

// insertStaged inserts the rows each tail ("FROM ... WHERE ... ORDER BY
// ...") selects into event, in that order, with their ids. It must be the
// first statement of the transaction under way: should another program
// have inserted into event behind our back and taken ids we had given
// out, it rolls the transaction back, begins it again and inserts the
// events with new ids, still in that order (above the summaries'
// watermark, like that program's rows: summary.go). Not a SAVEPOINT: with
// one open, SQLite copies every page the insert changes into a
// sub-journal, a temporary file, some 200 bytes written an event (single
// events at 64 connections; shard/DESIGN.md, "The staging ring").
func insertStaged(c *sqlite3.SQLiteConn, tails ...string) (int64, error) {
	n, err := insertTails(c, mergeColumns, tails)
	var se sqlite3.Error
	if err == nil || !errors.As(err, &se) || se.Code != sqlite3.ErrConstraint {
		return n, err
	}
	for _, q := range []string{"ROLLBACK", "BEGIN IMMEDIATE"} {
		if _, err := c.Exec(q, nil); err != nil {
			return 0, err
		}
	}
	return insertTails(c, "event_type, application, version, platform, user_id, session_id, value, time", tails)
}

func insertTails(c *sqlite3.SQLiteConn, cols string, tails []string) (int64, error) {
	var total int64
	for _, t := range tails {
		res, err := c.Exec(fmt.Sprintf("INSERT INTO event (%s) SELECT %s %s", cols, cols, t), nil)
		if err != nil {
			return 0, err
		}
		n, _ := res.RowsAffected()
		total += n
	}
	return total, nil
}

func (m *merger) close() error {
	if m == nil {
		return nil
	}
	err1 := m.stage.(driver.Stmt).Close()
	err2 := m.maxEvent.(driver.Stmt).Close()
	return errors.Join(err1, err2)
}

// firstID returns the id of the first event of the transaction under way:
// after every id in event and every staged one.
func (m *merger) firstID() (int64, error) {
	rows, err := m.maxEvent.QueryContext(context.Background(), nil)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	dest := make([]driver.Value, 1)
	if err := rows.Next(dest); err != nil {
		return 0, err
	}
	id, _ := dest[0].(int64)
	return max(id, m.hi) + 1, nil
}

// room checks that n events from id first fit in the ring beside the
// staged ones. When nothing is staged it moves the watermark past any gap
// (ids another program took in event) and doubles the ring until the
// group fits, or once when the last full ring came round faster than the
// merge interval (grow), in the transaction under way; it returns the
// watermark and size to keep once that commits. With events staged and no
// room it returns errRingFull.
func (m *merger) room(c *sqlite3.SQLiteConn, first int64, n int) (merged, slots int64, err error) {
	last := first + int64(n) - 1
	grow := m.grow && m.hi == m.merged && m.slots < maxRingSlots
	if last-m.merged <= m.slots && !grow {
		return m.merged, m.slots, nil
	}
	if m.hi > m.merged {
		return 0, 0, errRingFull
	}
	merged, slots = first-1, m.slots
	if grow {
		slots *= 2
	}
	for int64(n) > slots {
		slots *= 2
	}
	_, err = c.ExecContext(context.Background(), "UPDATE event_ring_merged SET merged = ?, slots = ?",
		[]driver.NamedValue{{Ordinal: 1, Value: merged}, {Ordinal: 2, Value: slots}})
	return merged, slots, err
}

// committed records a transaction that committed the events up to id hi,
// with the ring's watermark and size as it left them.
func (m *merger) committed(hi, merged, slots int64) {
	if m.staged() == 0 {
		m.since = time.Now()
	}
	m.hi, m.merged, m.slots = hi, merged, slots
	m.grow = m.grow && slots < maxRingSlots && m.staged() == 0
}

// due returns how long until the next merge is due; zero or less means now.
func (m *merger) due(o Options, now time.Time) time.Duration {
	staged := m.staged()
	if staged == 0 {
		return time.Hour
	}
	if staged >= o.MergeRows {
		return 0
	}
	wait := o.MergeInterval
	if staged < mergeQuietRows {
		wait = o.MergeQuietInterval
	}
	return m.since.Add(wait).Sub(now)
}

// mergeIfDue runs one bounded merge if one is due. The writer calls it
// between group commits.
func (w *writer) mergeIfDue() {
	m := w.db.merge
	if m == nil || m.due(w.db.opts, time.Now()) > 0 {
		return
	}
	if _, _, err := w.db.mergeOnce(m.limit(w.db.opts)); err != nil {
		m.failures++
		if time.Since(m.lastFailLog) >= time.Second {
			w.db.logger.Error("merge failed; the events stay staged and are merged later", "staged", m.staged(), "err", classify(err), "failures", m.failures)
			m.lastFailLog = time.Now()
		}
		// Try again after an interval, not after every commit.
		m.since = time.Now()
		return
	}
	if m.failures > 0 {
		w.db.logger.Info("merges succeed again", "failed_merges", m.failures)
		m.failures = 0
	}
}

// limit is how many events the next merge between group commits moves at
// most: MergeMaxRows, or with a MergeBudget the chunk sized to it.
func (m *merger) limit(o Options) int {
	if o.MergeBudget <= 0 {
		return o.MergeMaxRows
	}
	return min(m.chunk, o.MergeMaxRows)
}

// measured sizes the next chunk from a merge that moved n events of a limit
// in took: to take MergeBudget at the rate this one had. Only merges that
// filled at least half their limit count, since a small merge's rate is
// mostly its fixed cost. The new size is the mean of the old and the
// measured one, so that one slow merge does not halve the next.
func (m *merger) measured(o Options, n, limit int, took time.Duration) {
	if o.MergeBudget <= 0 || n < limit/2 || took <= 0 {
		return
	}
	fit := int(float64(n) * float64(o.MergeBudget) / float64(took))
	m.chunk = max(mergeMinRows, min(o.MergeMaxRows, (m.chunk+fit)/2))
}

// mergeOnce moves at most limit of the oldest staged events into event in
// one transaction: INSERT ... SELECT of their slots in id (arrival) order,
// then the watermark past them. Either both happen or neither, so after a
// crash at any point each event is either staged (above the watermark) or
// in event. The ring's rows stay, stale, until the slot is written again.
func (db *DB) mergeOnce(limit int) (moved int, more bool, err error) {
	m, c := db.merge, db.conn
	start := time.Now()
	lo, hi := m.merged+1, m.hi
	if hi < lo {
		return 0, false, nil
	}
	upto := hi
	if hi-lo+1 > int64(limit) {
		upto = lo + int64(limit) - 1
	}
	if _, err := c.Exec("BEGIN IMMEDIATE", nil); err != nil {
		return 0, false, err
	}
	// The ids lo..upto are at the slots lo%slots..upto%slots, wrapping
	// round once at most; slot order is id order within each piece.
	a, b := lo%m.slots, upto%m.slots
	ids := fmt.Sprintf("AND id BETWEEN %d AND %d ORDER BY slot", lo, upto)
	tails := []string{fmt.Sprintf("FROM event_ring WHERE slot BETWEEN %d AND %d %s", a, b, ids)}
	if a > b {
		tails = []string{fmt.Sprintf("FROM event_ring WHERE slot >= %d %s", a, ids), fmt.Sprintf("FROM event_ring WHERE slot <= %d %s", b, ids)}
	}
	n, err := insertStaged(c, tails...)
	if err != nil {
		return 0, false, rollback(c, err)
	}
	if _, err := c.Exec(fmt.Sprintf("UPDATE event_ring_merged SET merged = %d", upto), nil); err != nil {
		return 0, false, rollback(c, err)
	}
	if _, err := c.Exec("COMMIT", nil); err != nil {
		return 0, false, rollback(c, err)
	}
	db.merges.Add(1)
	db.merged.Add(uint64(n))
	m.merged = upto
	more = upto < hi
	if more {
		// The rest is older than the interval already: due at once.
		m.since = time.Time{}
	}
	took := time.Since(start)
	m.measured(db.opts, int(n), limit, took)
	if db.OnMerge != nil {
		db.OnMerge(int(n), took)
	}
	return int(n), more, nil
}

// Merge moves every event staged so far into event and returns once that
// has committed: for a caller that must see in event what was acknowledged
// before (a test, an export that cannot wait for the interval). It runs in
// the writer, between group commits, like any merge.
func (db *DB) Merge(ctx context.Context) error {
	if db.conn == nil {
		return ErrNotOpen
	}
	if db.merge == nil {
		return nil
	}
	return db.askWriter(ctx, db.mergeNow)
}

// askWriter hands the writer a request on ch, between group commits, and
// waits for its answer.
func (db *DB) askWriter(ctx context.Context, ch chan<- chan error) error {
	done := make(chan error, 1)
	select {
	case ch <- done:
	case <-db.exited:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// mergeAll merges until the staging table is empty: at open, at close and
// for Merge.
func (db *DB) mergeAll() (int, error) {
	total := 0
	for {
		n, more, err := db.mergeOnce(db.opts.MergeMaxRows)
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}
