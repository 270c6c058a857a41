package shard

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/mattn/go-sqlite3"
)

// StagingTable is the append-only table the group commit writes to when
// merging is on (see DESIGN.md, "Staging and merge"). It has the columns of
// event and no secondary index; the merge moves its rows into event. Every
// write job that deletes events (erasure, retention) must delete from it too,
// in the same transaction.
const StagingTable = "event_staging"

// ViewAll is a view of event and the rows still in StagingTable, with the
// ids they will keep: what a reader that must see the newest second reads.
const ViewAll = "event_all"

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
CREATE TABLE IF NOT EXISTS event_staging (
	event_type VARCHAR NOT NULL,
	application VARCHAR NOT NULL,
	version VARCHAR NOT NULL,
	platform VARCHAR NOT NULL,
	user_id VARCHAR NOT NULL,
	session_id VARCHAR NOT NULL,
	value JSON NOT NULL,
	id INTEGER NOT NULL,
	time DATETIME NOT NULL,
	PRIMARY KEY (id)
);
CREATE VIEW IF NOT EXISTS event_all AS
	SELECT ` + mergeColumns + ` FROM event
	UNION ALL
	SELECT ` + mergeColumns + ` FROM event_staging;
`

// stageSQL takes the eight columns of insertSQL in the same order, then the
// id, which the writer assigns so that a staged event keeps its id.
const stageSQL = `INSERT INTO event_staging (event_type, application, version, platform, user_id, session_id, value, time, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`

// nextIDSQL is the id the next event gets: after every id in event and in
// staging, as INTEGER PRIMARY KEY would pick it.
const nextIDSQL = `SELECT max(coalesce((SELECT max(id) FROM event), 0), coalesce((SELECT max(id) FROM event_staging), 0)) + 1`

// stagedRange returns the lowest and highest staged id and the count.
const stagedRange = `SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM event_staging`

// merger is the writer's staging state. Only the writer goroutine uses it.
type merger struct {
	stage  driver.StmtExecContext
	nextID driver.StmtQueryContext
	// staged is how many events the staging table holds; since is when the
	// oldest of them was committed.
	staged int
	since  time.Time
	// chunk is the most events the next merge moves (bounded merges).
	chunk int
	// failures counts merges failed in a row, for the log.
	failures    int
	lastFailLog time.Time
}

// openStaging creates the staging table (and the view) if they are missing,
// prepares the statements and merges whatever a previous run left staged.
func (db *DB) openStaging() error {
	c := db.conn
	if _, err := c.Exec(createStaging, nil); err != nil {
		return fmt.Errorf("create staging table: %w", err)
	}
	st, err := c.Prepare(stageSQL)
	if err != nil {
		return fmt.Errorf("prepare staging insert: %w", err)
	}
	nx, err := c.Prepare(nextIDSQL)
	if err != nil {
		st.Close()
		return fmt.Errorf("prepare next id: %w", err)
	}
	db.merge = &merger{stage: st.(driver.StmtExecContext), nextID: nx.(driver.StmtQueryContext), chunk: mergeChunkStart}
	lo, hi, err := stagedIDs(c)
	if err != nil {
		return fmt.Errorf("read staging table: %w", err)
	}
	if hi > 0 {
		db.merge.staged = int(hi - lo + 1)
		db.merge.since = time.Now()
		n, err := db.mergeAll()
		if err != nil {
			return fmt.Errorf("merge events staged by the previous run: %w", err)
		}
		db.logger.Info("merged events staged by the previous run", "events", n)
	}
	return nil
}

func (m *merger) close() error {
	if m == nil {
		return nil
	}
	err1 := m.stage.(driver.Stmt).Close()
	err2 := m.nextID.(driver.Stmt).Close()
	return errors.Join(err1, err2)
}

func stagedIDs(c *sqlite3.SQLiteConn) (lo, hi int64, err error) {
	rows, err := c.Query(stagedRange, nil)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	dest := make([]driver.Value, 2)
	if err := rows.Next(dest); err != nil {
		return 0, 0, err
	}
	lo, _ = dest[0].(int64)
	hi, _ = dest[1].(int64)
	return lo, hi, nil
}

// firstID returns the id of the first event of the transaction under way.
func (m *merger) firstID() (int64, error) {
	rows, err := m.nextID.QueryContext(context.Background(), nil)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	dest := make([]driver.Value, 1)
	if err := rows.Next(dest); err != nil {
		return 0, err
	}
	id, _ := dest[0].(int64)
	return id, nil
}

// committed records n events staged by a transaction that committed.
func (m *merger) committed(n int) {
	if m.staged == 0 {
		m.since = time.Now()
	}
	m.staged += n
}

// due returns how long until the next merge is due; zero or less means now.
func (m *merger) due(o Options, now time.Time) time.Duration {
	if m.staged == 0 {
		return time.Hour
	}
	if m.staged >= o.MergeRows {
		return 0
	}
	wait := o.MergeInterval
	if m.staged < mergeQuietRows {
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
			w.db.logger.Error("merge failed; the events stay staged and are merged later", "staged", m.staged, "err", classify(err), "failures", m.failures)
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
// one transaction: INSERT ... SELECT in id (arrival) order, then DELETE of
// the same ids. Either both happen or neither, so after a crash at any point
// each event is in exactly one of the two tables.
func (db *DB) mergeOnce(limit int) (moved int, more bool, err error) {
	m, c := db.merge, db.conn
	start := time.Now()
	if _, err := c.Exec("BEGIN IMMEDIATE", nil); err != nil {
		return 0, false, err
	}
	lo, hi, err := stagedIDs(c)
	if err != nil {
		return 0, false, rollback(c, err)
	}
	if hi == 0 {
		m.staged = 0
		return 0, false, rollback(c, nil)
	}
	upto := hi
	if hi-lo+1 > int64(limit) {
		upto = lo + int64(limit) - 1
	}
	ins := fmt.Sprintf("INSERT INTO event (%s) SELECT %s FROM event_staging WHERE id <= %d ORDER BY id", mergeColumns, mergeColumns, upto)
	res, err := c.Exec(ins, nil)
	if err != nil {
		var se sqlite3.Error
		if !errors.As(err, &se) || se.Code != sqlite3.ErrConstraint {
			return 0, false, rollback(c, err)
		}
		// Another program inserted into event behind our back and took
		// ids we had given out: the events get new ids, still in arrival
		// order (above the summaries' watermark, like that program's
		// rows: summary.go).
		ins = fmt.Sprintf("INSERT INTO event (%[1]s) SELECT %[1]s FROM event_staging WHERE id <= %[2]d ORDER BY id",
			"event_type, application, version, platform, user_id, session_id, value, time", upto)
		if res, err = c.Exec(ins, nil); err != nil {
			return 0, false, rollback(c, err)
		}
	}
	n, _ := res.RowsAffected()
	del := "DELETE FROM event_staging"
	if upto < hi {
		del = fmt.Sprintf("DELETE FROM event_staging WHERE id <= %d", upto)
	}
	if _, err := c.Exec(del, nil); err != nil {
		return 0, false, rollback(c, err)
	}
	if _, err := c.Exec("COMMIT", nil); err != nil {
		return 0, false, rollback(c, err)
	}
	db.merges.Add(1)
	db.merged.Add(uint64(n))
	more = upto < hi
	if more {
		m.staged = int(hi - upto)
		// The rest is older than the interval already: due at once.
		m.since = time.Time{}
	} else {
		m.staged = 0
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
