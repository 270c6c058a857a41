package shard

import (
	"context"
	"database/sql/driver"
	"fmt"
	"math"
	"time"

	"github.com/mattn/go-sqlite3"
)

// The summary tables: what the stats API reads instead of most raw event
// rows (shard/query/DESIGN.md gives the figures behind them). Tables of
// their own, so event and its five indexes stay as Pycolytics made them.
//
//   - SummaryActivity: per application, day (the date part of the stored
//     time), session, user, event type, version and platform, the number
//     of events and the first and last time: one row per summary pass that
//     saw the group (its key has the pass after the day), folded into one
//     row once the day is over. Every figure of the stats API adds up from
//     these rows.
//   - SummaryUsers: each user's first time per application (new users,
//     retention).
//   - SummaryDays: the lowest and highest id and the number of events of
//     each application's day: the applications list, and the ids a query of
//     raw rows (funnel, value) reads. Deletes leave the id bounds alone:
//     they may become wider than the rows left, never narrower.
//
// SummaryState's built_id is the watermark: the tables cover exactly the
// rows of event whose id is at most built_id. Rows above it (the tail) are
// read raw by the stats and added up to the same groups on the fly. The
// writer summarises the tail between group commits, not in the merge: every
// SummaryInterval, or as soon as SummaryRows rows wait, in chunks of rows by
// id, each chunk one transaction with the watermark and appending its own
// rows to stats_activity: new leaves, not the random ones of today's
// session ids (DESIGN.md, "Summary tables"). Deletes (erasure, retention,
// ERASE_EVENT_TYPE) take the deleted rows at or below the watermark out of
// the tables in their own transaction, so a crash at any point leaves the
// tables equal to the rows they cover. A database whose tables are missing,
// of an older layout, or without a state row (summaries were off, or
// another program removed it) gets them emptied and built again from id 0
// by the same passes; the stats meanwhile read more rows raw.
const (
	SummaryActivity = "stats_activity"
	SummaryUsers    = "stats_user"
	SummaryDays     = "stats_day"
	SummaryState    = "stats_state"
	// summaryPasses holds where each summary pass began (summarizeSQL).
	summaryPasses = "stats_pass"
)

// summaryVersion is the layout of the tables; tables of another layout are
// dropped and built again.
const summaryVersion = 6

// Defaults of the summary passes.
const (
	// DefaultSummaryInterval is how long a row of event waits at most
	// before it is summarised (the stats read it raw meanwhile).
	DefaultSummaryInterval = time.Minute
	// DefaultSummaryRows starts a summary pass as soon as this many rows
	// wait: it bounds the raw tail the stats read under heavy load.
	DefaultSummaryRows = 100000
)

// A summary pass is one transaction of at most SummaryRows rows by id
// (more, from an old database's build, take several). Its pass number is
// the watermark it starts from (stats_pass keeps them: a row's pass is the
// last that began below its id).

const createSummaries = `
CREATE TABLE IF NOT EXISTS stats_activity (
	application TEXT NOT NULL,
	day TEXT NOT NULL,
	pass INTEGER NOT NULL,
	session_id TEXT NOT NULL,
	user_id TEXT NOT NULL,
	event_type TEXT NOT NULL,
	version TEXT NOT NULL,
	platform TEXT NOT NULL,
	events INTEGER NOT NULL,
	first_time TEXT NOT NULL,
	last_time TEXT NOT NULL,
	PRIMARY KEY (application, day, pass, session_id, user_id, event_type, version, platform)
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
	events INTEGER NOT NULL,
	folded_to INTEGER NOT NULL DEFAULT 0,
	pending INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (application, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stats_pass (lo INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS stats_state (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	version INTEGER NOT NULL,
	built_id INTEGER NOT NULL
);
`

// summarizeSQL adds event's rows with ids above ?1 up to ?2 to the summary
// tables as the pass ?1: its groups are new rows of stats_activity, after
// the day's earlier passes (their key starts with application, day, pass),
// so a pass writes new leaves, not the random ones of a session id. A
// returning user's stats_user row is left alone (SQLite would not write an
// unchanged cell either; the WHERE skips the work); only today's stats_day
// row changes.
var summarizeSQL = []string{
	`INSERT INTO stats_pass (lo) VALUES (?1) ON CONFLICT DO NOTHING`,
	`INSERT INTO stats_activity (application, day, pass, session_id, user_id, event_type, version, platform, events, first_time, last_time)
SELECT application, substr(time, 1, 10), ?1, session_id, user_id, event_type, version, platform, count(*), min(time) || '', max(time) || ''
FROM event WHERE id > ?1 AND id <= ?2 GROUP BY 1, 2, 4, 5, 6, 7, 8
ON CONFLICT DO UPDATE SET events = events + excluded.events,
	first_time = min(first_time, excluded.first_time), last_time = max(last_time, excluded.last_time)`,
	`INSERT INTO stats_user (application, user_id, first_time)
SELECT application, user_id, min(time) || '' FROM event WHERE id > ?1 AND id <= ?2 GROUP BY 1, 2
ON CONFLICT DO UPDATE SET first_time = excluded.first_time WHERE excluded.first_time < first_time`,
	`INSERT INTO stats_day (application, day, min_id, max_id, events, pending)
SELECT application, substr(time, 1, 10), min(id), max(id), count(*), 1 FROM event WHERE id > ?1 AND id <= ?2 GROUP BY 1, 2
ON CONFLICT DO UPDATE SET min_id = min(min_id, excluded.min_id), max_id = max(max_id, excluded.max_id), events = events + excluded.events, pending = 1`,
	`UPDATE stats_state SET built_id = ?2`,
}

// Folding: a day whose rows are all summarised (its day is before the
// newest summarised row's) has its passes' rows added up into one row per
// group, of pass -1, once: one sequential rewrite of the day. Its
// stats_day row keeps folded_to, the watermark then: its rows with ids up
// to it are in the folded rows, those above in the passes after it
// (pending says there are such; a late row, or another program's, makes a
// day pending again and it is folded again).
//
// A fold reads, writes and deletes all of its day's pass rows inside the
// pass's transaction, while requests wait for the writer, so a pass folds
// only as many pass rows as FoldRows (about what a full pass of
// SummaryRows costs, DESIGN.md "Folding, bounded"): the pending days in key
// order, up to foldDays of them, while their pass rows fit; the rest wait
// for the next pass. A day with more pass rows than FoldRows on its own
// is never folded: it keeps pending = foldTooLarge (still pending: its
// passes stay in stats_pass) and its readers sum its passes' rows, exact
// as before; a late row of it sets pending = 1, so it is counted again.
const foldDays = 8

// foldTooLarge is stats_day's pending of a finished day with more pass
// rows than FoldRows.
const foldTooLarge = 2

// foldCount counts the pass rows of the day ?2 of the application ?1, up
// to ?3 of them (a range of stats_activity's key).
const foldCount = `SELECT count(*) FROM (SELECT 1 FROM stats_activity WHERE application = ?1 AND day = ?2 AND pass >= 0 LIMIT ?3)`

// foldSQL folds the day ?2 of the application ?1 at the watermark ?3.
var foldSQL = []string{
	`INSERT INTO stats_activity (application, day, pass, session_id, user_id, event_type, version, platform, events, first_time, last_time)
SELECT application, day, -1, session_id, user_id, event_type, version, platform, sum(events), min(first_time), max(last_time)
FROM stats_activity WHERE application = ?1 AND day = ?2 AND pass >= 0 GROUP BY session_id, user_id, event_type, version, platform
ON CONFLICT DO UPDATE SET events = events + excluded.events,
	first_time = min(first_time, excluded.first_time), last_time = max(last_time, excluded.last_time)`,
	`DELETE FROM stats_activity WHERE application = ?1 AND day = ?2 AND pass >= 0`,
	`UPDATE stats_day SET pending = 0, folded_to = ?3 WHERE application = ?1 AND day = ?2`,
}

// prunePasses removes the passes no row of stats_activity can be in any
// more: those before the pass of the lowest id of every day still pending
// (every pass below the watermark ?1 when none is).
const prunePasses = `DELETE FROM stats_pass WHERE lo < (SELECT CASE WHEN m IS NULL THEN ?1
	ELSE coalesce((SELECT max(lo) FROM stats_pass WHERE lo < m), 0) END FROM (SELECT min(min_id) AS m FROM stats_day WHERE pending))`

// bg is the context of the writer's own statements.
var bg = context.Background()

// summaries is the writer's view of the summary tables; nil when they are
// off. Only the writer goroutine uses it.
type summaries struct {
	// counted is how many rows had reached event (inEvent) when tail was
	// last brought up to date; tail estimates the rows above the
	// watermark, since when the oldest of them waits.
	counted uint64
	tail    int64
	since   time.Time
	// passTo is the id the pass under way summarises up to; 0 when no
	// pass runs.
	passTo int64
	// retry is when a pass may start again after a failed chunk.
	retry time.Time
	// backfill says a registered value field may be incomplete
	// (valuefield.go); backfillTurn that the next chunk is one of it.
	backfill, backfillTurn bool
}

// openSummaries creates the summary tables, or with summaries off removes
// their state row so that readers read the raw rows (the tables are built
// again by the next run with them on). Tables of an older layout, or
// without their state row, are emptied to be built again from id 0.
func (db *DB) openSummaries() error {
	c := db.conn
	if db.opts.SummaryInterval < 0 {
		if n, _, err := queryInt64(c, "SELECT count(*) FROM sqlite_schema WHERE name = ?", SummaryState); err != nil || n == 0 {
			return err
		}
		_, err := c.Exec("DELETE FROM "+SummaryState, nil)
		return err
	}
	version, _, err := queryInt64(c, "SELECT count(*) FROM pragma_table_info(?) WHERE name = 'version'", SummaryState)
	if err != nil {
		return err
	}
	built, ok := int64(0), false
	if version > 0 {
		if built, ok, err = queryInt64(c, "SELECT built_id FROM stats_state WHERE id = 1 AND version = ?", int64(summaryVersion)); err != nil {
			return err
		}
	}
	if !ok {
		// Missing, of an older layout, or without their state row: built
		// again from id 0, in this layout.
		// stats_value: a table of layouts 4 and 5, built in development
		// (measured, not taken: DESIGN.md), gone with them.
		for _, t := range []string{SummaryActivity, SummaryUsers, SummaryDays, summaryPasses, SummaryState, "stats_value", SummaryValueNums, SummaryValueFields} {
			if _, err := c.Exec("DROP TABLE IF EXISTS "+t, nil); err != nil {
				return fmt.Errorf("drop summary table %s: %w", t, err)
			}
		}
	}
	if _, err := c.Exec(createSummaries+createValueFields, nil); err != nil {
		return fmt.Errorf("create summary tables: %w", err)
	}
	// The temporary tables of deleteEvents live as long as the connection.
	if _, err := c.Exec(createGone, nil); err != nil {
		return fmt.Errorf("create summary tables: %w", err)
	}
	maxID, _, err := queryInt64(c, "SELECT coalesce(max(id), 0) FROM event")
	if err != nil {
		return err
	}
	switch {
	case !ok:
		if err := resetSummaries(c); err != nil {
			return err
		}
		built = 0
	case built > maxID:
		// The newest rows went while nobody kept the tables: the ids
		// above maxID will be given out again.
		for _, q := range []string{"BEGIN IMMEDIATE", fmt.Sprintf("UPDATE stats_state SET built_id = %d", maxID), lowerPasses, lowerValueFields, "COMMIT"} {
			if _, err := c.Exec(q, nil); err != nil {
				return rollback(c, fmt.Errorf("lower the summaries' watermark: %w", err))
			}
		}
		built = maxID
	}
	// A hand-edited path would fail every pass and delete.
	if _, err := c.Exec("BEGIN IMMEDIATE", nil); err != nil {
		return err
	}
	dropped, err := dropBadPaths(c)
	if err != nil {
		return rollback(c, fmt.Errorf("check the value fields' paths: %w", err))
	}
	if _, err := c.Exec("COMMIT", nil); err != nil {
		return rollback(c, fmt.Errorf("check the value fields' paths: %w", err))
	}
	db.warnBadPaths(dropped)
	// A field left incomplete by the previous run is filled in again.
	incomplete, _, err := queryInt64(c, `SELECT EXISTS (SELECT 1 FROM stats_value_field WHERE built_id < (SELECT built_id FROM stats_state WHERE id = 1))`)
	if err != nil {
		return err
	}
	db.sum = &summaries{counted: db.inEvent(), tail: maxID - built, since: time.Now(), backfill: incomplete > 0}
	return nil
}

// warnBadPaths logs the fields dropBadPaths dropped.
func (db *DB) warnBadPaths(dropped []valueField) {
	for _, f := range dropped {
		db.logger.Warn("a value field's JSON path is not one SQLite takes; the field is dropped (the next request for it registers it again)",
			"application", f.application, "event_type", f.eventType, "field", f.field)
	}
}

// resetSummaries empties the summary tables and sets the watermark to 0.
func resetSummaries(c *sqlite3.SQLiteConn) error {
	for _, q := range []string{
		"BEGIN IMMEDIATE",
		"DELETE FROM stats_activity",
		"DELETE FROM stats_user",
		"DELETE FROM stats_day",
		"DELETE FROM stats_pass",
		"DELETE FROM stats_value_num",
		"UPDATE stats_value_field SET built_id = 0",
		fmt.Sprintf("INSERT OR REPLACE INTO stats_state (id, version, built_id) VALUES (1, %d, 0)", summaryVersion),
		"COMMIT",
	} {
		if _, err := c.Exec(q, nil); err != nil {
			return rollback(c, fmt.Errorf("reset summary tables: %w", err))
		}
	}
	return nil
}

// inEvent counts the rows this run has put into event: merged ones, or
// with merging off, committed ones.
func (db *DB) inEvent() uint64 {
	if db.merge != nil {
		return db.merged.Load()
	}
	return db.stored.Load()
}

// A tail of at least summaryIdleRows rows is summarised as soon as the
// writer has had no group commit for summaryIdleAfter, not SummaryInterval
// after it began: when a busy stretch ends, its leftover rows are added up
// while no request waits, and the stats read fewer of them raw. A quiet
// game (a few events a second) never leaves that many rows waiting, so it
// keeps one pass a SummaryInterval; the only cost is a bursty load with
// idle gaps, whose passes come per burst instead of per interval.
const (
	summaryIdleRows  = 10000
	summaryIdleAfter = 2 * time.Second
)

// summaryDue returns how long until a summary pass is due; zero or less
// means now (or a pass is under way). lastCommit is when the writer's last
// group commit ended.
func (db *DB) summaryDue(now, lastCommit time.Time) time.Duration {
	s := db.sum
	if s == nil {
		return time.Hour
	}
	if n := db.inEvent(); n != s.counted {
		if s.tail <= 0 {
			s.since = now
		}
		s.tail += int64(n - s.counted)
		s.counted = n
	}
	switch {
	case now.Before(s.retry):
		return s.retry.Sub(now)
	case s.backfill:
		return 0
	case s.passTo > 0 || s.tail >= int64(db.opts.SummaryRows):
		return 0
	case s.tail <= 0:
		return time.Hour
	}
	due := s.since.Add(db.opts.SummaryInterval).Sub(now)
	if s.tail >= summaryIdleRows {
		due = min(due, lastCommit.Add(summaryIdleAfter).Sub(now))
	}
	return due
}

// summaryChunk summarises the next chunk of the pass under way (starting
// one up to event's newest row if none is) in its own transaction: at most
// limit rows' worth of ids above the watermark. It says whether the pass
// goes on.
func (db *DB) summaryChunk(limit int) (n int64, more bool, err error) {
	c, s := db.conn, db.sum
	if _, err := c.Exec("BEGIN IMMEDIATE", nil); err != nil {
		return 0, false, err
	}
	n, more, err = db.summarizeStep(c, limit)
	if err != nil {
		return 0, false, rollback(c, err)
	}
	if _, err := c.Exec("COMMIT", nil); err != nil {
		return 0, false, rollback(c, err)
	}
	if !more {
		s.passTo = 0
	}
	return n, more, nil
}

func (db *DB) summarizeStep(c *sqlite3.SQLiteConn, limit int) (int64, bool, error) {
	s := db.sum
	built, ok, err := queryInt64(c, "SELECT built_id FROM stats_state WHERE id = 1")
	if err != nil {
		return 0, false, err
	}
	if !ok {
		// Another program removed the state row: the tables no longer
		// say what they cover. Empty them and build them again.
		db.logger.Warn("the summary tables' state row is gone; building them again")
		for _, q := range []string{"DELETE FROM stats_activity", "DELETE FROM stats_user", "DELETE FROM stats_day", "DELETE FROM stats_pass",
			"DELETE FROM stats_value_num", "UPDATE stats_value_field SET built_id = 0",
			fmt.Sprintf("INSERT INTO stats_state (id, version, built_id) VALUES (1, %d, 0)", summaryVersion)} {
			if _, err := c.Exec(q, nil); err != nil {
				return 0, false, fmt.Errorf("reset summary tables: %w", err)
			}
		}
		built = 0
	}
	if s.passTo <= built {
		top, _, err := queryInt64(c, "SELECT coalesce(max(id), 0) FROM event")
		if err != nil {
			return 0, false, err
		}
		s.passTo = top
	}
	// Ids may have gaps (deleted rows): take limit rows' worth of ids.
	hi, found, err := queryInt64(c, "SELECT max(id) FROM (SELECT id FROM event WHERE id > ? AND id <= ? ORDER BY id LIMIT ?)", built, s.passTo, int64(limit))
	if err != nil {
		return 0, false, err
	}
	if !found {
		hi = s.passTo
	}
	if hi > built {
		args := []driver.NamedValue{{Ordinal: 1, Value: built}, {Ordinal: 2, Value: hi}}
		fields, err := hasValueFields(c)
		if err != nil {
			return 0, false, err
		}
		if fields {
			if err := valuePass(c, built, hi); err != nil {
				return 0, false, fmt.Errorf("summarise value fields: %w", err)
			}
		}
		for _, q := range summarizeSQL {
			if _, err := c.ExecContext(bg, q, args); err != nil {
				return 0, false, fmt.Errorf("summarise events: %w", err)
			}
		}
		if err := foldDone(c, hi, db.opts.FoldRows); err != nil {
			return 0, false, err
		}
	}
	top, _, err := queryInt64(c, "SELECT coalesce(max(id), 0) FROM event")
	if err != nil {
		return 0, false, err
	}
	s.tail = top - hi
	if s.tail > 0 {
		s.since = time.Now()
	}
	return hi - built, hi < s.passTo, nil
}

// foldDone folds the days whose rows are all summarised, in the pass's
// transaction, as many as fit in foldRows pass rows (every pending day,
// up to foldDays, when foldRows is negative); hi is the new watermark.
func foldDone(c *sqlite3.SQLiteConn, hi int64, foldRows int) error {
	rows, err := c.QueryContext(bg, `SELECT application, day FROM stats_day WHERE pending = 1
	AND day < (SELECT substr(time, 1, 10) FROM event WHERE id <= ?1 ORDER BY id DESC LIMIT 1) LIMIT ?2`,
		[]driver.NamedValue{{Ordinal: 1, Value: hi}, {Ordinal: 2, Value: int64(foldDays)}})
	if err != nil {
		return fmt.Errorf("fold summarised days: %w", err)
	}
	var days [][2]string
	if err := eachRow(rows, func(v []driver.Value) error {
		days = append(days, [2]string{asString(v[0]), asString(v[1])})
		return nil
	}); err != nil {
		return fmt.Errorf("fold summarised days: %w", err)
	}
	folded, budget := false, int64(foldRows)
	for i, d := range days {
		args := []driver.NamedValue{{Ordinal: 1, Value: d[0]}, {Ordinal: 2, Value: d[1]}, {Ordinal: 3, Value: hi}}
		if foldRows >= 0 {
			// At most budget+1 rows read: the count costs no more than
			// the fold it allows.
			n, _, err := queryInt64(c, foldCount, d[0], d[1], budget+1)
			if err != nil {
				return fmt.Errorf("fold summarised days: %w", err)
			}
			if n > budget {
				if i == 0 {
					// More than FoldRows on its own: left unfolded.
					q := fmt.Sprintf("UPDATE stats_day SET pending = %d WHERE application = ?1 AND day = ?2", foldTooLarge)
					if _, err := c.ExecContext(bg, q, args[:2]); err != nil {
						return fmt.Errorf("fold summarised days: %w", err)
					}
				}
				break
			}
			budget -= n
		}
		for _, q := range foldSQL {
			if _, err := c.ExecContext(bg, q, args); err != nil {
				return fmt.Errorf("fold summarised days: %w", err)
			}
		}
		for _, q := range valueFoldSQL {
			if _, err := c.ExecContext(bg, q, args[:2]); err != nil {
				return fmt.Errorf("fold summarised days: %w", err)
			}
		}
		folded = true
	}
	if folded {
		if _, err := c.ExecContext(bg, prunePasses, []driver.NamedValue{{Ordinal: 1, Value: hi}}); err != nil {
			return fmt.Errorf("fold summarised days: %w", err)
		}
	}
	return nil
}

// runSummaryChunk runs one chunk of the summary pass. The writer calls it
// between group commits, taking turns with the delete jobs' chunks.
func (w *writer) runSummaryChunk() {
	db, s := w.db, w.db.sum
	start := time.Now()
	db.busySince.Store(start.UnixNano())
	var err error
	// A backfill takes turns with the summary pass (which has nothing to
	// do when the tail is empty).
	if s.backfill && (s.backfillTurn || s.passTo == 0 && s.tail <= 0) {
		_, err = db.valueBackfillChunk(ValueBackfillRows)
		s.backfillTurn = false
	} else {
		_, _, err = db.summaryChunk(db.opts.SummaryRows)
		s.backfillTurn = true
	}
	db.busySince.Store(0)
	if err != nil {
		s.passTo = 0
		// Try again after an interval, not after every commit.
		s.retry = time.Now().Add(min(db.opts.SummaryInterval, 10*time.Second))
		db.logger.Error("summarising events failed; the stats read them raw until a later pass", "err", classify(err))
	}
}

// summarizeAll summarises up to limit rows of the tail (at Close and for
// Summarize), chunk after chunk.
func (db *DB) summarizeAll(limit int64) error {
	s := db.sum
	if s == nil {
		return nil
	}
	s.passTo = 0
	for done := int64(0); done < limit; {
		n, more, err := db.summaryChunk(int(min(int64(db.opts.SummaryRows), limit-done)))
		if err != nil {
			return err
		}
		if !more {
			break
		}
		done += n
	}
	if limit < math.MaxInt64 {
		return nil
	}
	// Summarize: the value fields' backfill too.
	for s.backfill {
		if _, err := db.valueBackfillChunk(ValueBackfillRows); err != nil {
			return err
		}
	}
	return nil
}

// Summarize brings the summary tables up to event's newest row and returns
// once that has committed (a test, a benchmark). It runs in the writer,
// between group commits.
func (db *DB) Summarize(ctx context.Context) error {
	if db.conn == nil {
		return ErrNotOpen
	}
	if db.sum == nil {
		return nil
	}
	return db.askWriter(ctx, db.summarizeNow)
}

const createGone = `
CREATE TEMP TABLE IF NOT EXISTS stats_gone_ids (id INTEGER PRIMARY KEY);
CREATE TEMP TABLE IF NOT EXISTS stats_value_gone (application, day, event_type, field, pass, version, platform, events, numbers,
	PRIMARY KEY (application, day, event_type, field, pass, version, platform));
CREATE TEMP TABLE IF NOT EXISTS stats_gone (application, day, pass, session_id, user_id, event_type, version, platform, events, first_time, last_time, lo, hi,
	PRIMARY KEY (application, day, pass, session_id, user_id, event_type, version, platform));
`

// lowerPasses follows the watermark down (the newest rows went): the
// passes at or above it lost all their rows, and no day is folded beyond
// it.
const lowerPasses = `DELETE FROM stats_pass WHERE lo >= (SELECT built_id FROM stats_state WHERE id = 1);
UPDATE stats_day SET folded_to = (SELECT built_id FROM stats_state WHERE id = 1) WHERE folded_to > (SELECT built_id FROM stats_state WHERE id = 1)`

// goneRows is the summarised rows of stats_gone_ids with the pass whose
// row of stats_activity holds each (folded when its day was folded after
// it, else the last pass that began below its id) and that pass's ids, lo
// (exclusive) to hi.
const goneRows = `SELECT e.*, substr(e.time, 1, 10) AS day, CASE WHEN e.id <= d.folded_to THEN -1 ELSE p.lo END AS pass,
	CASE WHEN e.id <= d.folded_to THEN 0 ELSE p.lo END AS lo,
	CASE WHEN e.id <= d.folded_to THEN d.folded_to ELSE coalesce((SELECT min(lo) FROM stats_pass n WHERE n.lo > p.lo), s.built_id) END AS hi
FROM event e JOIN stats_state s ON s.id = 1 AND e.id <= s.built_id
JOIN stats_day d ON d.application = e.application AND d.day = substr(e.time, 1, 10)
LEFT JOIN stats_pass p ON p.lo = (SELECT max(lo) FROM stats_pass WHERE lo < e.id)
WHERE e.id IN temp.stats_gone_ids`

// goneKey is the key of a row of stats_activity, s, equal to stats_gone's,
// g.
const goneKey = `(s.application, s.day, s.pass, s.session_id, s.user_id, s.event_type, s.version, s.platform) =
(g.application, g.day, g.pass, g.session_id, g.user_id, g.event_type, g.version, g.platform)`

// deleteEvents deletes the rows of event that where selects (at most limit
// of them when limit > 0), and takes those at or below the watermark out of
// the summaries in the same transaction: the counts of the rows of their
// passes go down, a row left without events goes, and a row or user whose
// first or last time was among the deleted rows has it read again from the
// rows left of its pass (through the user_id index). When the newest rows
// go, the watermark comes down to the newest row left, since their ids will
// be given out again.
func (db *DB) deleteEvents(c *sqlite3.SQLiteConn, where string, args []driver.NamedValue, limit int) (int64, error) {
	lim := ""
	if limit > 0 {
		lim = fmt.Sprintf(" LIMIT %d", limit)
	}
	if db.sum == nil {
		return execRows(c, "DELETE FROM event WHERE rowid IN (SELECT rowid FROM event WHERE "+where+lim+")", args)
	}
	for _, q := range []string{"DELETE FROM temp.stats_gone_ids", "DELETE FROM temp.stats_gone", "DELETE FROM temp.stats_value_gone"} {
		if _, err := c.Exec(q, nil); err != nil {
			return 0, fmt.Errorf("delete events: %w", err)
		}
	}
	if _, err := c.ExecContext(bg, "INSERT INTO temp.stats_gone_ids SELECT rowid FROM event WHERE "+where+lim, args); err != nil {
		return 0, fmt.Errorf("delete events: %w", err)
	}
	// The rows of a group in its pass: ids above g.lo up to g.hi.
	const same = `e.user_id = s.user_id AND +e.application = s.application AND +e.session_id = s.session_id
		AND +e.event_type = s.event_type AND +e.version = s.version AND +e.platform = s.platform AND substr(e.time, 1, 10) = s.day AND e.id > g.lo AND e.id <= g.hi`
	fields, err := hasValueFields(c)
	if err != nil {
		return 0, fmt.Errorf("delete events: %w", err)
	}
	var n int64
	for i, q := range []string{
		`INSERT INTO temp.stats_gone SELECT application, day, pass, session_id, user_id, event_type, version, platform, count(*), min(time) || '', max(time) || '', min(lo), max(hi)
FROM (` + goneRows + `) GROUP BY 1, 2, 3, 4, 5, 6, 7, 8`,
		"DELETE FROM event WHERE rowid IN temp.stats_gone_ids",
		"UPDATE stats_state SET built_id = min(built_id, (SELECT coalesce(max(id), 0) FROM event))",
		lowerPasses,
		lowerValueFields,
		// Counts down; rows left empty go.
		`UPDATE stats_activity AS s SET events = s.events - g.events FROM temp.stats_gone g WHERE ` + goneKey,
		`DELETE FROM stats_activity WHERE events <= 0 AND (application, day, pass, session_id, user_id, event_type, version, platform) IN
(SELECT application, day, pass, session_id, user_id, event_type, version, platform FROM temp.stats_gone)`,
		`UPDATE stats_day AS s SET events = s.events - g.events
FROM (SELECT application, day, sum(events) AS events FROM temp.stats_gone GROUP BY 1, 2) g
WHERE s.application = g.application AND s.day = g.day`,
		// Rows that lost their first or last event: read both again.
		`UPDATE stats_activity AS s SET
	first_time = (SELECT min(time) || '' FROM event e WHERE ` + same + `),
	last_time = (SELECT max(time) || '' FROM event e WHERE ` + same + `)
FROM temp.stats_gone g
WHERE ` + goneKey + ` AND (g.first_time <= s.first_time OR g.last_time >= s.last_time)`,
		// Users who lost their first event: read it again, or drop them.
		`UPDATE stats_user AS s SET first_time = coalesce((SELECT min(time) || '' FROM event e WHERE e.user_id = s.user_id AND +e.application = s.application
	AND e.id <= (SELECT built_id FROM stats_state WHERE id = 1)), '')
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
		if i == 0 && fields {
			// The deleted rows' numbers, read before they go.
			if _, err := c.Exec(goneValueSQL, nil); err != nil {
				// A path SQLite does not take (a hand-edited registry)
				// must not fail every delete: its field goes.
				dropped, derr := dropBadPaths(c)
				if derr != nil || len(dropped) == 0 {
					return 0, fmt.Errorf("delete events: %w", err)
				}
				db.warnBadPaths(dropped)
				if _, err := c.Exec(goneValueSQL, nil); err != nil {
					return 0, fmt.Errorf("delete events: %w", err)
				}
			}
		}
	}
	if fields {
		broken, err := goneValuesAfter(c)
		if err != nil {
			return 0, fmt.Errorf("delete events: %w", err)
		}
		for _, f := range broken {
			// The field's key only: never the user or the numbers.
			db.logger.Warn("a value field's statistics did not hold the deleted rows; they are filled in again from the rows left",
				"application", f.application, "event_type", f.eventType, "field", f.field)
			db.sum.backfill = true
		}
	}
	return n, nil
}
