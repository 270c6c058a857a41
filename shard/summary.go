package shard

import (
	"context"
	"database/sql/driver"
	"fmt"
	"sync/atomic"

	"github.com/mattn/go-sqlite3"
)

// The summary tables: what the stats API reads instead of the raw event rows
// (shard/query/DESIGN.md gives the figures behind them). The writer keeps
// them equal to event inside the transactions that change event: the merge
// adds the merged rows to them, the delete jobs take the deleted rows out.
// Tables of their own, so event and its five indexes stay as Pycolytics made
// them.
//
//   - SummaryActivity: one row per application, day (the date part of the
//     stored time), session, user, event type, version and platform, with
//     the number of events and the first and last time. Every figure of
//     the stats API adds up from these groups.
//   - SummaryUsers: each user's first time per application (new users,
//     retention).
//   - SummaryDays: the lowest and highest id of each application's day, so
//     that a query of raw rows (funnel, value) reads the range's ids only.
//     Deletes leave these bounds alone: they may become wider than the rows
//     left, never narrower.
//
// SummaryState says which rows of event the tables cover: every row whose
// id is at most built_id or above start_id. They are complete (readers may
// use them) once built_id reaches start_id. A database that had rows before
// the tables existed (an old or Pycolytics one), or whose rows changed while
// gocolytics was not keeping the tables (MERGE_INTERVAL=off, or another
// program inserting), gets them built again by the backfill job: chunks of
// event's rows by id, run between group commits like a delete job.
const (
	SummaryActivity = "stats_activity"
	SummaryUsers    = "stats_user"
	SummaryDays     = "stats_day"
	SummaryState    = "stats_state"
)

const createSummaries = `
CREATE TABLE IF NOT EXISTS stats_activity (
	application TEXT NOT NULL,
	day TEXT NOT NULL,
	session_id TEXT NOT NULL,
	user_id TEXT NOT NULL,
	event_type TEXT NOT NULL,
	version TEXT NOT NULL,
	platform TEXT NOT NULL,
	events INTEGER NOT NULL,
	first_time TEXT NOT NULL,
	last_time TEXT NOT NULL,
	PRIMARY KEY (application, day, session_id, user_id, event_type, version, platform)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stats_user (
	application TEXT NOT NULL,
	user_id TEXT NOT NULL,
	first_time TEXT NOT NULL,
	PRIMARY KEY (application, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stats_day (
	application TEXT NOT NULL,
	day TEXT NOT NULL,
	min_id INTEGER NOT NULL,
	max_id INTEGER NOT NULL,
	PRIMARY KEY (application, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stats_state (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	start_id INTEGER NOT NULL,
	built_id INTEGER NOT NULL,
	last_id INTEGER NOT NULL
);
`

// summaryKey is the key of SummaryActivity as an expression of event's
// columns.
const summaryKey = `application, substr(time, 1, 10), session_id, user_id, event_type, version, platform`

// summarizeSQL adds the rows of table selected by where (with ?1 and ?2 the
// bounds of their ids) to the three summary tables.
func summarizeSQL(table, where string) []string {
	return []string{
		`INSERT INTO stats_activity (application, day, session_id, user_id, event_type, version, platform, events, first_time, last_time)
SELECT ` + summaryKey + `, count(*), min(time) || '', max(time) || '' FROM ` + table + ` WHERE ` + where + ` GROUP BY 1, 2, 3, 4, 5, 6, 7
ON CONFLICT DO UPDATE SET events = events + excluded.events,
	first_time = min(first_time, excluded.first_time), last_time = max(last_time, excluded.last_time)`,
		`INSERT INTO stats_user (application, user_id, first_time)
SELECT application, user_id, min(time) || '' FROM ` + table + ` WHERE ` + where + ` GROUP BY 1, 2
ON CONFLICT DO UPDATE SET first_time = min(first_time, excluded.first_time)`,
		`INSERT INTO stats_day (application, day, min_id, max_id)
SELECT application, substr(time, 1, 10), min(id), max(id) FROM ` + table + ` WHERE ` + where + ` GROUP BY 1, 2
ON CONFLICT DO UPDATE SET min_id = min(min_id, excluded.min_id), max_id = max(max_id, excluded.max_id)`,
	}
}

// bg is the context of the writer's own statements.
var bg = context.Background()

var (
	summarizeStaged = summarizeSQL(StagingTable, "id >= ?1 AND id <= ?2")
	summarizeEvent  = summarizeSQL("event", "id > ?1 AND id <= ?2")
)

// summaries is the writer's view of the summary tables. Only the writer
// goroutine uses it.
type summaries struct {
	// on says the tables exist and are kept: merging is on.
	on bool
	// complete says built_id has reached start_id.
	complete bool
	// building says a backfill job is queued or running.
	building bool
}

// openSummaries creates the summary tables when merging is on and decides
// whether they must be built again; with merging off, rows go straight into
// event where nobody adds them to the summaries, so the tables are marked
// unusable (readers fall back to the raw rows) until a run with merging
// builds them again. It runs before the leftovers of a previous run are
// merged, so that the merge adds them.
func (db *DB) openSummaries() error {
	c := db.conn
	if db.merge == nil || db.opts.noSummaries {
		if n, _, err := queryInt64(c, "SELECT count(*) FROM sqlite_schema WHERE name = ?", SummaryState); err != nil || n == 0 {
			return err
		}
		_, err := c.Exec("DELETE FROM "+SummaryState, nil)
		return err
	}
	if _, err := c.Exec(createSummaries, nil); err != nil {
		return fmt.Errorf("create summary tables: %w", err)
	}
	maxID, _, err := queryInt64(c, "SELECT coalesce(max(id), 0) FROM event")
	if err != nil {
		return err
	}
	start, built, last, ok, err := readSummaryState(c)
	if err != nil {
		return err
	}
	if !ok || last < maxID {
		// New tables, or rows in event the summaries never saw: build
		// them again from scratch.
		if err := resetSummaries(c, maxID); err != nil {
			return err
		}
		start, built = maxID, 0
	}
	db.sum = &summaries{on: true, complete: built >= start}
	return nil
}

func readSummaryState(c *sqlite3.SQLiteConn) (start, built, last int64, ok bool, err error) {
	rows, err := c.Query("SELECT start_id, built_id, last_id FROM stats_state WHERE id = 1", nil)
	if err != nil {
		return 0, 0, 0, false, err
	}
	defer rows.Close()
	dest := make([]driver.Value, 3)
	if err := rows.Next(dest); err != nil {
		return 0, 0, 0, false, nil
	}
	start, _ = dest[0].(int64)
	built, _ = dest[1].(int64)
	last, _ = dest[2].(int64)
	return start, built, last, true, nil
}

// resetSummaries empties the summary tables and marks every row of event up
// to maxID as still to be built.
func resetSummaries(c *sqlite3.SQLiteConn, maxID int64) error {
	for _, q := range []string{
		"BEGIN IMMEDIATE",
		"DELETE FROM stats_activity",
		"DELETE FROM stats_user",
		"DELETE FROM stats_day",
		fmt.Sprintf("INSERT OR REPLACE INTO stats_state (id, start_id, built_id, last_id) VALUES (1, %d, 0, %d)", maxID, maxID),
		"COMMIT",
	} {
		if _, err := c.Exec(q, nil); err != nil {
			return rollback(c, fmt.Errorf("reset summary tables: %w", err))
		}
	}
	return nil
}

// summarizeMerge is the merge's hook: inside the merge transaction, before
// the staged rows with ids lo to upto are deleted from the staging table, it
// adds them to the summaries. renumbered says the merge gave the rows new
// ids (another program had inserted into event): the summaries cannot know
// that program's rows, so they are marked to be built again.
func (db *DB) summarizeMerge(c *sqlite3.SQLiteConn, lo, upto int64, renumbered bool) error {
	s := db.sum
	if s == nil || !s.on {
		return nil
	}
	if renumbered {
		_, err := c.Exec("UPDATE stats_state SET built_id = 0, start_id = (SELECT coalesce(max(id), 0) FROM event), last_id = (SELECT coalesce(max(id), 0) FROM event)", nil)
		if err == nil {
			for _, t := range []string{SummaryActivity, SummaryUsers, SummaryDays} {
				if _, err = c.Exec("DELETE FROM "+t, nil); err != nil {
					break
				}
			}
		}
		if err != nil {
			return fmt.Errorf("mark summaries for rebuilding: %w", err)
		}
		s.complete = false
		return nil
	}
	args := []driver.NamedValue{{Ordinal: 1, Value: lo}, {Ordinal: 2, Value: upto}}
	for _, q := range summarizeStaged {
		if _, err := c.ExecContext(bg, q, args); err != nil {
			return fmt.Errorf("summarize merged events: %w", err)
		}
	}
	if _, err := c.ExecContext(bg, "UPDATE stats_state SET last_id = max(last_id, ?2)", args); err != nil {
		return fmt.Errorf("summarize merged events: %w", err)
	}
	return nil
}

// summarizeCopy adds a backup copy's staged rows to its summaries, as the
// merge would (mergeCopy moves them into event in the same transaction).
func summarizeCopy(c *sqlite3.SQLiteConn) error {
	if n, _, err := queryInt64(c, "SELECT count(*) FROM sqlite_schema WHERE name = ?", SummaryState); err != nil || n == 0 {
		return err
	}
	args := []driver.NamedValue{{Ordinal: 1, Value: int64(0)}, {Ordinal: 2, Value: int64(1) << 62}}
	for _, q := range summarizeStaged {
		if _, err := c.ExecContext(bg, q, args); err != nil {
			return err
		}
	}
	_, err := c.ExecContext(bg, "UPDATE stats_state SET last_id = max(last_id, (SELECT coalesce(max(id), 0) FROM event_staging))", nil)
	return err
}

// backfillJob builds the summaries of event's rows that they do not cover
// yet, a chunk of ids at a time, each chunk its own transaction between
// group commits (like a delete: at most half of the writer's time).
func (db *DB) backfillJob() *job {
	j := &job{ctx: bg, counter: new(atomic.Uint64), done: make(chan error, 1)}
	db.sum.building = true
	j.finished = func(err error) {
		db.sum.building = false
		if err != nil {
			db.logger.Error("building the summary tables failed; stats read the raw rows until the next start", "err", err)
		}
	}
	j.step = func(c *sqlite3.SQLiteConn, limit int) (int64, bool, error) {
		start, built, _, ok, err := readSummaryState(c)
		if err != nil {
			return 0, false, err
		}
		if !ok {
			// Nobody keeps the tables without their state.
			db.sum.on, db.sum.complete = false, false
			return 0, false, nil
		}
		if built >= start {
			db.sum.complete = true
			return 0, false, nil
		}
		// Ids may have gaps (deleted rows): take limit rows' worth of ids.
		hi, found, err := queryInt64(c, "SELECT max(id) FROM (SELECT id FROM event WHERE id > ? AND id <= ? ORDER BY id LIMIT ?)", built, start, int64(limit))
		if err != nil {
			return 0, false, err
		}
		if !found {
			hi = start
		}
		args := []driver.NamedValue{{Ordinal: 1, Value: built}, {Ordinal: 2, Value: hi}}
		for _, q := range summarizeEvent {
			if _, err := c.ExecContext(bg, q, args); err != nil {
				return 0, false, fmt.Errorf("build summaries: %w", err)
			}
		}
		if _, err := c.ExecContext(bg, "UPDATE stats_state SET built_id = ?2", args); err != nil {
			return 0, false, fmt.Errorf("build summaries: %w", err)
		}
		if hi >= start {
			db.sum.complete = true
			db.logger.Info("summary tables built", "rows_up_to_id", start)
			return hi - built, false, nil
		}
		return hi - built, true, nil
	}
	return j
}

// deleteEvents deletes the rows of event that where selects (at most limit
// of them when limit > 0), and takes them out of the summaries in the same
// transaction: their counts go down, a group left without events goes, and
// a group or user whose first or last time was among the deleted rows has
// it read again from the rows left (through the user_id index).
func (db *DB) deleteEvents(c *sqlite3.SQLiteConn, where string, args []driver.NamedValue, limit int) (int64, error) {
	lim := ""
	if limit > 0 {
		lim = fmt.Sprintf(" LIMIT %d", limit)
	}
	s := db.sum
	if s == nil || !s.on {
		return execRows(c, "DELETE FROM event WHERE rowid IN (SELECT rowid FROM event WHERE "+where+lim+")", args)
	}
	if !s.complete {
		// A delete while the summaries are being built (only if their
		// build failed): build them again afterwards.
		if err := db.summarizeMerge(c, 0, 0, true); err != nil {
			return 0, err
		}
		return execRows(c, "DELETE FROM event WHERE rowid IN (SELECT rowid FROM event WHERE "+where+lim+")", args)
	}
	steps := []string{
		"CREATE TEMP TABLE IF NOT EXISTS stats_gone_ids (id INTEGER PRIMARY KEY)",
		`CREATE TEMP TABLE IF NOT EXISTS stats_gone (application, day, session_id, user_id, event_type, version, platform, events, first_time, last_time,
	PRIMARY KEY (application, day, session_id, user_id, event_type, version, platform))`,
		"DELETE FROM temp.stats_gone_ids",
		"DELETE FROM temp.stats_gone",
	}
	for _, q := range steps {
		if _, err := c.Exec(q, nil); err != nil {
			return 0, fmt.Errorf("delete events: %w", err)
		}
	}
	if _, err := c.ExecContext(bg, "INSERT INTO temp.stats_gone_ids SELECT rowid FROM event WHERE "+where+lim, args); err != nil {
		return 0, fmt.Errorf("delete events: %w", err)
	}
	var n int64
	for i, q := range []string{
		`INSERT INTO temp.stats_gone SELECT ` + summaryKey + `, count(*), min(time) || '', max(time) || ''
FROM event WHERE id IN temp.stats_gone_ids GROUP BY 1, 2, 3, 4, 5, 6, 7`,
		"DELETE FROM event WHERE rowid IN temp.stats_gone_ids",
		// Counts down; groups left empty go.
		`UPDATE stats_activity AS s SET events = s.events - g.events FROM temp.stats_gone g
WHERE (s.application, s.day, s.session_id, s.user_id, s.event_type, s.version, s.platform) = (g.application, g.day, g.session_id, g.user_id, g.event_type, g.version, g.platform)`,
		`DELETE FROM stats_activity WHERE events <= 0 AND (application, day, session_id, user_id, event_type, version, platform) IN
(SELECT application, day, session_id, user_id, event_type, version, platform FROM temp.stats_gone)`,
		// Groups that lost their first or last event: read both again.
		`UPDATE stats_activity AS s SET
	first_time = (SELECT min(time) || '' FROM event e WHERE e.user_id = s.user_id AND +e.application = s.application AND +e.session_id = s.session_id
		AND +e.event_type = s.event_type AND +e.version = s.version AND +e.platform = s.platform AND substr(e.time, 1, 10) = s.day),
	last_time = (SELECT max(time) || '' FROM event e WHERE e.user_id = s.user_id AND +e.application = s.application AND +e.session_id = s.session_id
		AND +e.event_type = s.event_type AND +e.version = s.version AND +e.platform = s.platform AND substr(e.time, 1, 10) = s.day)
FROM temp.stats_gone g
WHERE (s.application, s.day, s.session_id, s.user_id, s.event_type, s.version, s.platform) = (g.application, g.day, g.session_id, g.user_id, g.event_type, g.version, g.platform)
	AND (g.first_time <= s.first_time OR g.last_time >= s.last_time)`,
		// Users who lost their first event: read it again, or drop them.
		`UPDATE stats_user AS s SET first_time = coalesce((SELECT min(time) || '' FROM event e WHERE e.user_id = s.user_id AND +e.application = s.application), '')
FROM (SELECT application, user_id, min(first_time) AS first_time FROM temp.stats_gone GROUP BY 1, 2) g
WHERE s.application = g.application AND s.user_id = g.user_id AND g.first_time <= s.first_time`,
		"DELETE FROM stats_user WHERE first_time = '' AND (application, user_id) IN (SELECT application, user_id FROM temp.stats_gone)",
	} {
		res, err := c.Exec(q, nil)
		if err != nil {
			return 0, fmt.Errorf("delete events: %w", err)
		}
		if i == 1 {
			n, _ = res.RowsAffected()
		}
	}
	return n, nil
}
