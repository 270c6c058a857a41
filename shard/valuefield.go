package shard

import (
	"cmp"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
)

// The field registry (DESIGN.md "The field registry"):
// the value statistics of the (application, event type, field) triples a
// value request has asked for, and of no others.
//
//   - stats_value_field: the registry, at most MaxValueFields rows; path is
//     the field's JSON path as the raw path reads it (query.jsonPath),
//     built_id the field's own watermark (its numbers cover the rows of its
//     event type with ids up to it), asked_at the Unix second it was last
//     asked for (the least recently asked goes when the registry is full;
//     one not asked for in ValueFieldIdle goes at the next pass).
//   - stats_value_num: per application, day, event type, field, pass
//     (pass -1 once the day is folded, as stats_activity), version and
//     platform, events (how many events of the type the group holds) and
//     numbers: the texts the raw path's own expression gives for them
//     (valueNumText), joined by commas, NULL when none. One lookup per
//     event of the type: no json_tree, so no event is irregular.
//
// A field is complete when its built_id equals the summaries' watermark:
// every summary pass then adds its pass's rows and moves both together. A
// new field starts at 0 and is filled in, up to the watermark, by backfill
// chunks of ValueBackfillRows rows by id, which the writer runs between
// group commits taking turns with the summary pass's chunks; readers read
// the field raw until it is complete. Deletes take their rows' numbers out
// (subtractNumbers), as far as each field's built_id.
const (
	SummaryValueFields = "stats_value_field"
	SummaryValueNums   = "stats_value_num"
)

// MaxValueFields bounds the registry, chosen by what a full registry costs
// the writer (DESIGN.md "The field registry", the cost, measured): 8
// fields on the two commonest types of BenchmarkSummaries_Ingest add
// 11-17 % to its CPU per event, 16 fields 16-24 %. MaxTypeFields bounds the
// fields of one application's event type: a pass looks up at most that
// many fields per event, whatever the types' shares of the events. A new
// field beyond either drops the least recently asked (of its type, then
// of all). Variables so that a test can register more.
var (
	MaxValueFields = 8
	MaxTypeFields  = 4
)

// ValueBackfillRows is the rows by id of one backfill chunk (a variable
// so that a test can make chunks small).
var ValueBackfillRows = 20000

// ValueFieldIdle is how long a field stays registered without being
// asked for: the next summary pass drops it with its numbers, so what the
// registry costs the passes follows what the dashboard is used for (a
// field asked for again is filled in again, by backfill).
const ValueFieldIdle = 7 * 24 * time.Hour

// valueAskEvery is how often an asked field's asked_at is written again.
const valueAskEvery = time.Minute

const createValueFields = `
CREATE TABLE IF NOT EXISTS stats_value_field (
	application TEXT NOT NULL,
	event_type TEXT NOT NULL,
	field TEXT NOT NULL,
	path TEXT NOT NULL,
	built_id INTEGER NOT NULL,
	asked_at INTEGER NOT NULL,
	PRIMARY KEY (application, event_type, field)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stats_value_num (
	application TEXT NOT NULL,
	day TEXT NOT NULL,
	event_type TEXT NOT NULL,
	field TEXT NOT NULL,
	pass INTEGER NOT NULL,
	version TEXT NOT NULL,
	platform TEXT NOT NULL,
	events INTEGER NOT NULL,
	numbers TEXT,
	PRIMARY KEY (application, day, event_type, field, pass, version, platform)
) WITHOUT ROWID;
`

// valueNumText is the raw path's expression (query.valueText) on the row
// e with the path p: a number's JSON text, else NULL.
func valueNumText(e, p string) string {
	return `CASE WHEN json_valid(` + e + `.value) AND json_type(` + e + `.value, ` + p + `) IN ('integer', 'real') THEN ` + e + `.value -> ` + p + ` END`
}

// addNumbers is the upsert that adds a SELECT's groups to stats_value_num
// or to a delete's temp.stats_value_gone.
const addNumbers = ` ON CONFLICT DO UPDATE SET events = events + excluded.events, numbers = nullif(concat_ws(',', numbers, excluded.numbers), '')`

// valueAddGroup adds a group of the pass ?5 to stats_value_num.
const valueAddGroup = `INSERT INTO stats_value_num (application, day, event_type, field, pass, version, platform, events, numbers)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)` + addNumbers

// moveValueFields moves the complete fields (built_id ?1) with the
// watermark to ?2.
const moveValueFields = `UPDATE stats_value_field SET built_id = ?2 WHERE built_id = ?1`

// A valueType is the complete fields of a pass of one application's
// event type, with their paths.
type valueType struct {
	application, eventType string
	fields, paths          []string
}

// valueTypes are the event types valuePass reads.
type valueTypes []valueType

// completeFields reads the fields whose built_id is lo, by application and
// event type.
func completeFields(c *sqlite3.SQLiteConn, lo int64) (valueTypes, error) {
	rows, err := c.QueryContext(bg, `SELECT application, event_type, field, path FROM stats_value_field WHERE built_id = ?
ORDER BY application, event_type, field`, []driver.NamedValue{{Ordinal: 1, Value: lo}})
	if err != nil {
		return nil, err
	}
	var types valueTypes
	if err := eachRow(rows, func(v []driver.Value) error {
		a, t := asString(v[0]), asString(v[1])
		if n := len(types); n == 0 || types[n-1].application != a || types[n-1].eventType != t {
			types = append(types, valueType{application: a, eventType: t})
		}
		last := &types[len(types)-1]
		last.fields = append(last.fields, asString(v[2]))
		last.paths = append(last.paths, asString(v[3]))
		return nil
	}); err != nil {
		return nil, err
	}
	return types, nil
}

// rowsSQL is the statement that reads the pass's rows of these types
// (ids above ?1 up to ?2), one row per event: its type's number (n), day,
// version, platform and the texts of its fields' numbers by the raw
// path's expression, one column per field; the types and paths are the
// statement's arguments after ?1 and ?2.
func (types valueTypes) rowsSQL() (string, []driver.NamedValue) {
	k := 0
	for _, t := range types {
		k = max(k, len(t.paths))
	}
	args := []driver.NamedValue{{Ordinal: 1}, {Ordinal: 2}}
	arg := func(v any) string {
		args = append(args, driver.NamedValue{Ordinal: len(args) + 1, Value: v})
		return fmt.Sprintf("?%d", len(args))
	}
	var q strings.Builder
	q.WriteString("WITH r(n, application, event_type")
	for j := range k {
		fmt.Fprintf(&q, ", p%d", j)
	}
	q.WriteString(") AS (VALUES ")
	for i, t := range types {
		if i > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "(%d, %s, %s", i, arg(t.application), arg(t.eventType))
		for j := range k {
			// A type with fewer fields than k: '$' is an object, no number.
			p := "$"
			if j < len(t.paths) {
				p = t.paths[j]
			}
			q.WriteString(", " + arg(p))
		}
		q.WriteString(")")
	}
	q.WriteString(")\nSELECT r.n, substr(e.time, 1, 10), e.version, e.platform")
	for j := range k {
		q.WriteString(", " + valueNumText("e", fmt.Sprintf("r.p%d", j)))
	}
	q.WriteString("\nFROM event e CROSS JOIN r ON r.application = e.application AND r.event_type = e.event_type WHERE e.id > ?1 AND e.id <= ?2")
	return q.String(), args
}

// A valueGroup is the key of a pass's group of one event type's events:
// the type's number in valueTypes, day, version and platform.
type valueGroup struct {
	n                      int64
	day, version, platform string
}

// A valueSum is a group's events and the texts of its numbers, a list
// per field of its type.
type valueSum struct {
	events  int64
	numbers [][]byte
}

// valuePass adds the rows of the pass lo (ids above lo up to hi) to every
// complete field, then moves the fields with the watermark; the caller
// skips it when the registry is empty. One walk of the pass's rows, one
// row per event of a registered type with a column per field of its type
// (not a row per event and field), added up here, in a map, not by
// SQLite's GROUP BY, whose sorter held every row with its texts and spilled
// to a temporary file (DESIGN.md "The field registry": the cost,
// measured). The texts are SQLite's, by the raw path's expression, in id
// order.
func valuePass(c *sqlite3.SQLiteConn, lo, hi int64) error {
	if err := expireValueFields(c, time.Now().Add(-ValueFieldIdle).Unix()); err != nil {
		return err
	}
	types, err := completeFields(c, lo)
	if err != nil || len(types) == 0 {
		return err
	}
	q, args := types.rowsSQL()
	args[0].Value, args[1].Value = lo, hi
	rows, err := c.QueryContext(bg, q, args)
	if err != nil {
		return err
	}
	groups := map[valueGroup]*valueSum{}
	if err := eachRow(rows, func(v []driver.Value) error {
		k := valueGroup{v[0].(int64), asString(v[1]), asString(v[2]), asString(v[3])}
		g := groups[k]
		if g == nil {
			g = &valueSum{numbers: make([][]byte, len(types[k.n].fields))}
			groups[k] = g
		}
		g.events++
		for j, t := range v[4 : 4+len(g.numbers)] {
			if t == nil {
				continue
			}
			if len(g.numbers[j]) > 0 {
				g.numbers[j] = append(g.numbers[j], ',')
			}
			g.numbers[j] = append(g.numbers[j], asString(t)...)
		}
		return nil
	}); err != nil {
		return err
	}
	keys := slices.SortedFunc(maps.Keys(groups), func(a, b valueGroup) int {
		return cmp.Or(cmp.Compare(a.n, b.n), cmp.Compare(a.day, b.day), cmp.Compare(a.version, b.version), cmp.Compare(a.platform, b.platform))
	})
	if len(keys) > 0 {
		st, err := c.Prepare(valueAddGroup)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, k := range keys {
			g, t := groups[k], types[k.n]
			for j, numbers := range g.numbers {
				var text driver.Value
				if len(numbers) > 0 {
					text = string(numbers)
				}
				if _, err := st.(driver.StmtExecContext).ExecContext(bg, []driver.NamedValue{{Ordinal: 1, Value: t.application}, {Ordinal: 2, Value: k.day},
					{Ordinal: 3, Value: t.eventType}, {Ordinal: 4, Value: t.fields[j]}, {Ordinal: 5, Value: lo}, {Ordinal: 6, Value: k.version},
					{Ordinal: 7, Value: k.platform}, {Ordinal: 8, Value: g.events}, {Ordinal: 9, Value: text}}); err != nil {
					return err
				}
			}
		}
	}
	_, err = c.ExecContext(bg, moveValueFields, args[:2])
	return err
}

// expireValueFields drops the fields last asked for before the Unix second
// cutoff, and their numbers: a look at the registry's few rows, and a
// delete only when one is due.
func expireValueFields(c *sqlite3.SQLiteConn, cutoff int64) error {
	due, _, err := queryInt64(c, `SELECT EXISTS (SELECT 1 FROM stats_value_field WHERE asked_at < ?)`, cutoff)
	if err != nil || due == 0 {
		return err
	}
	return dropValueFields(c, `asked_at < ?1`, cutoff)
}

// dropValueFields removes the registered fields that where (on
// stats_value_field, with args as ?1, ?2, ...) selects, and their numbers.
func dropValueFields(c *sqlite3.SQLiteConn, where string, args ...any) error {
	named := make([]driver.NamedValue, len(args))
	for i, a := range args {
		named[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	for _, q := range []string{
		`DELETE FROM stats_value_num WHERE (application, event_type, field) IN
(SELECT application, event_type, field FROM stats_value_field WHERE ` + where + `)`,
		`DELETE FROM stats_value_field WHERE ` + where,
	} {
		if _, err := c.ExecContext(bg, q, named); err != nil {
			return err
		}
	}
	return nil
}

// rowPass is the pass whose summary rows hold the summarised row e of the
// day d (stats_day): -1 when its day was folded after it, else the last
// pass that began below its id (goneRows reads it the same way).
const rowPass = `CASE WHEN e.id <= d.folded_to THEN -1 ELSE (SELECT max(lo) FROM stats_pass WHERE lo < e.id) END`

// valueBackfillSQL adds the field ?3 (application ?4, event type ?5, path
// ?6) of the rows with ids above ?1 up to ?2, each to its own pass, and
// moves the field's built_id to ?2.
var valueBackfillSQL = []string{
	`INSERT INTO stats_value_num (application, day, event_type, field, pass, version, platform, events, numbers)
SELECT e.application, d.day, e.event_type, ?3, ` + rowPass + `, e.version, e.platform, count(*), group_concat(` + valueNumText("e", "?6") + `, ',')
FROM event e JOIN stats_day d ON d.application = e.application AND d.day = substr(e.time, 1, 10)
WHERE e.id > ?1 AND e.id <= ?2 AND +e.application = ?4 AND +e.event_type = ?5 GROUP BY 2, 5, 6, 7` + addNumbers,
	`UPDATE stats_value_field SET built_id = ?2 WHERE application = ?4 AND event_type = ?5 AND field = ?3`,
}

// valueFoldSQL folds stats_value_num's rows of the day ?2 of the
// application ?1 (foldSQL).
var valueFoldSQL = []string{
	`INSERT INTO stats_value_num (application, day, event_type, field, pass, version, platform, events, numbers)
SELECT application, day, event_type, field, -1, version, platform, sum(events), group_concat(numbers, ',')
FROM stats_value_num WHERE application = ?1 AND day = ?2 AND pass >= 0 GROUP BY event_type, field, version, platform` + addNumbers,
	`DELETE FROM stats_value_num WHERE application = ?1 AND day = ?2 AND pass >= 0`,
}

// lowerValueFields follows the watermark down (deletes, or an open that
// found the newest rows gone).
const lowerValueFields = `UPDATE stats_value_field SET built_id = (SELECT built_id FROM stats_state WHERE id = 1)
WHERE built_id > (SELECT built_id FROM stats_state WHERE id = 1)`

// A valueAsk is a reader's word that a field was asked for; done, when
// set, gets the outcome (RegisterValueField).
type valueAsk struct {
	application, eventType, field, path string
	done                                chan error
}

// RegisterValueField is AskValueField that waits until the writer has
// handled the ask (a test, a benchmark).
func (db *DB) RegisterValueField(ctx context.Context, application, eventType, field, path string) error {
	if db.conn == nil {
		return ErrNotOpen
	}
	a := valueAsk{application, eventType, field, path, make(chan error, 1)}
	select {
	case db.valueAsks <- a:
	case <-db.exited:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-a.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// valueAsk handles an ask in the writer.
func (w *writer) valueAsk(a valueAsk) {
	err := w.db.registerValueField(a)
	if err != nil {
		err = classify(err)
		w.db.logger.Error("registering a value field failed", "err", err)
	}
	if a.done != nil {
		a.done <- err
	}
}

// AskValueField tells the writer that the value statistics of field (at
// the JSON path path) of application's events of eventType were asked
// for: it registers the field (or marks it asked again), without waiting.
// Readers call it; it never blocks, and an ask that finds the queue full
// is dropped (the next request asks again).
func (db *DB) AskValueField(application, eventType, field, path string) {
	if db == nil || db.valueAsks == nil {
		return
	}
	select {
	case db.valueAsks <- valueAsk{application, eventType, field, path, nil}:
	default:
	}
}

// registerValueField handles an ask in the writer: a registered field has
// its asked_at written again (at most every valueAskEvery); a new one is
// registered at built_id 0 (complete at once on an empty database), the
// least recently asked going when MaxTypeFields of its type or
// MaxValueFields in all are registered.
func (db *DB) registerValueField(a valueAsk) error {
	s := db.sum
	if s == nil || a.application == "" || a.eventType == "" || a.field == "" {
		return nil
	}
	c := db.conn
	now := time.Now().Unix()
	// A path SQLite does not take would fail every pass.
	if _, _, err := queryInt64(c, `SELECT json_type('{}', ?)`, a.path); err != nil {
		return nil
	}
	if _, err := c.Exec("BEGIN IMMEDIATE", nil); err != nil {
		return err
	}
	err := func() error {
		asked, ok, err := queryInt64(c, `SELECT asked_at FROM stats_value_field WHERE application = ? AND event_type = ? AND field = ?`, a.application, a.eventType, a.field)
		if err != nil {
			return err
		}
		key := []driver.NamedValue{{Ordinal: 1, Value: a.application}, {Ordinal: 2, Value: a.eventType}, {Ordinal: 3, Value: a.field},
			{Ordinal: 4, Value: a.path}, {Ordinal: 5, Value: now}}
		if ok {
			if now-asked < int64(valueAskEvery/time.Second) {
				return nil
			}
			_, err := c.ExecContext(bg, `UPDATE stats_value_field SET asked_at = ?5 WHERE application = ?1 AND event_type = ?2 AND field = ?3`, key)
			return err
		}
		// At most MaxTypeFields of its event type, then at most
		// MaxValueFields in all.
		m, _, err := queryInt64(c, `SELECT count(*) FROM stats_value_field WHERE application = ? AND event_type = ?`, a.application, a.eventType)
		if err != nil {
			return err
		}
		for ; m >= int64(MaxTypeFields); m-- {
			if err := dropLeastAsked(c, a.application, a.eventType); err != nil {
				return err
			}
		}
		n, _, err := queryInt64(c, `SELECT count(*) FROM stats_value_field`)
		if err != nil {
			return err
		}
		for ; n >= int64(MaxValueFields); n-- {
			if err := dropLeastAsked(c, nil, nil); err != nil {
				return err
			}
		}
		if _, err := c.ExecContext(bg, `INSERT INTO stats_value_field (application, event_type, field, path, built_id, asked_at) VALUES (?1, ?2, ?3, ?4, 0, ?5)`, key); err != nil {
			return err
		}
		// Complete at once when nothing is summarised yet.
		built, _, err := queryInt64(c, `SELECT built_id FROM stats_state WHERE id = 1`)
		s.backfill = s.backfill || built > 0
		return err
	}()
	if err != nil {
		return rollback(c, fmt.Errorf("register a value field: %w", err))
	}
	if _, err := c.Exec("COMMIT", nil); err != nil {
		return rollback(c, fmt.Errorf("register a value field: %w", err))
	}
	return nil
}

// dropLeastAsked removes the least recently asked field, of application's
// eventType unless they are nil, and its numbers.
func dropLeastAsked(c *sqlite3.SQLiteConn, application, eventType any) error {
	return dropValueFields(c, `(application, event_type, field) IN (SELECT application, event_type, field FROM stats_value_field
WHERE ?1 IS NULL OR application = ?1 AND event_type = ?2 ORDER BY asked_at, application, event_type, field LIMIT 1)`, application, eventType)
}

// valueBackfillChunk fills in the next chunk of the most recently asked
// incomplete field, in its own transaction; s.backfill goes false when no
// field is incomplete.
func (db *DB) valueBackfillChunk(limit int) (int64, error) {
	c, s := db.conn, db.sum
	if _, err := c.Exec("BEGIN IMMEDIATE", nil); err != nil {
		return 0, err
	}
	n, err := func() (int64, error) {
		rows, err := c.QueryContext(bg, `SELECT f.application, f.event_type, f.field, f.path, f.built_id, s.built_id
FROM stats_value_field f JOIN stats_state s ON s.id = 1 WHERE f.built_id < s.built_id ORDER BY f.asked_at DESC LIMIT 1`, nil)
		if err != nil {
			return 0, err
		}
		v := make([]driver.Value, 6)
		err = rows.Next(v)
		rows.Close()
		if errors.Is(err, io.EOF) {
			s.backfill = false
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		lo, top := v[4].(int64), v[5].(int64)
		hi, found, err := queryInt64(c, "SELECT max(id) FROM (SELECT id FROM event WHERE id > ? AND id <= ? ORDER BY id LIMIT ?)", lo, top, int64(limit))
		if err != nil {
			return 0, err
		}
		if !found || hi >= top || limit <= 0 {
			hi = top
		}
		args := []driver.NamedValue{{Ordinal: 1, Value: lo}, {Ordinal: 2, Value: hi}, {Ordinal: 3, Value: v[2]},
			{Ordinal: 4, Value: v[0]}, {Ordinal: 5, Value: v[1]}, {Ordinal: 6, Value: v[3]}}
		for _, q := range valueBackfillSQL {
			if _, err := c.ExecContext(bg, q, args); err != nil {
				return 0, err
			}
		}
		return hi - lo, nil
	}()
	if err != nil {
		return 0, rollback(c, fmt.Errorf("fill in a value field: %w", err))
	}
	if _, err := c.Exec("COMMIT", nil); err != nil {
		return 0, rollback(c, fmt.Errorf("fill in a value field: %w", err))
	}
	return n, nil
}

// hasValueFields says whether any field is registered.
func hasValueFields(c *sqlite3.SQLiteConn) (bool, error) {
	n, _, err := queryInt64(c, `SELECT EXISTS (SELECT 1 FROM stats_value_field)`)
	return n > 0, err
}

// goneValueSQL is the numbers of the deleted rows (goneRows) of each
// field, as far as its built_id, as a pass reads them, into
// temp.stats_value_gone.
var goneValueSQL = `INSERT INTO temp.stats_value_gone (application, day, event_type, field, pass, version, platform, events, numbers)
SELECT g.application, g.day, g.event_type, f.field, g.pass, g.version, g.platform, count(*), group_concat(` + valueNumText("g", "f.path") + `, ',')
FROM stats_value_field f JOIN (` + goneRows + `) g ON g.application = f.application AND g.event_type = f.event_type AND g.id <= f.built_id
GROUP BY 1, 2, 3, 4, 5, 6, 7` + addNumbers

// valueKey is the key of a row of stats_value_num, s, equal to
// stats_value_gone's, g.
const valueKey = `(s.application, s.day, s.event_type, s.field, s.pass, s.version, s.platform) =
(g.application, g.day, g.event_type, g.field, g.pass, g.version, g.platform)`

// A valueField is a registered field's key.
type valueField struct{ application, eventType, field string }

// goneValuesAfter takes stats_value_gone out of stats_value_num, after the
// rows went: counts down, numbers out, rows left without events gone. It
// returns the fields whose rows did not hold the deleted rows (a damaged
// or hand-edited file: a row missing, too few events, a number not
// there): rather than fail this delete and every later one (an erasure
// must succeed), their numbers are dropped and their built_id set back
// to 0, so that the backfill fills them in again from the rows left.
func goneValuesAfter(c *sqlite3.SQLiteConn) ([]valueField, error) {
	broken, err := subtractNumbers(c)
	if err != nil {
		return nil, err
	}
	for _, f := range broken {
		args := []driver.NamedValue{{Ordinal: 1, Value: f.application}, {Ordinal: 2, Value: f.eventType}, {Ordinal: 3, Value: f.field}}
		for _, q := range []string{
			`DELETE FROM stats_value_num WHERE application = ?1 AND event_type = ?2 AND field = ?3`,
			`DELETE FROM temp.stats_value_gone WHERE application = ?1 AND event_type = ?2 AND field = ?3`,
			`UPDATE stats_value_field SET built_id = 0 WHERE application = ?1 AND event_type = ?2 AND field = ?3`,
		} {
			if _, err := c.ExecContext(bg, q, args); err != nil {
				return nil, err
			}
		}
	}
	for _, q := range []string{
		`UPDATE stats_value_num AS s SET events = s.events - g.events FROM temp.stats_value_gone g WHERE ` + valueKey,
		`DELETE FROM stats_value_num WHERE events <= 0 AND (application, day, event_type, field, pass, version, platform) IN
(SELECT application, day, event_type, field, pass, version, platform FROM temp.stats_value_gone)`,
	} {
		if _, err := c.Exec(q, nil); err != nil {
			return nil, err
		}
	}
	return broken, nil
}

// subtractNumbers takes the numbers of stats_value_gone's rows out of
// stats_value_num's: each text once (the same texts, read from the same
// values by the same expression as the pass that added them). It leaves
// alone, and returns, the fields with a row that does not hold its
// deleted rows: missing, with fewer events, or without one of their
// numbers.
func subtractNumbers(c *sqlite3.SQLiteConn) ([]valueField, error) {
	rows, err := c.QueryContext(bg, `SELECT g.application, g.day, g.event_type, g.field, g.pass, g.version, g.platform, s.numbers, g.numbers, s.events, g.events
FROM temp.stats_value_gone g LEFT JOIN stats_value_num s ON `+valueKey, nil)
	if err != nil {
		return nil, err
	}
	type change struct {
		field   valueField
		key     []driver.NamedValue
		numbers string
	}
	var changes []change
	broken := map[valueField]bool{}
	if err := eachRow(rows, func(v []driver.Value) error {
		f := valueField{asString(v[0]), asString(v[2]), asString(v[3])}
		had, ok := v[9].(int64)
		if gone, _ := v[10].(int64); !ok || had < gone {
			broken[f] = true
			return nil
		}
		if v[8] == nil {
			return nil
		}
		left, ok := withoutTexts(asString(v[7]), asString(v[8]))
		if !ok {
			broken[f] = true
			return nil
		}
		ch := change{field: f, numbers: left}
		for i := range 7 {
			ch.key = append(ch.key, driver.NamedValue{Ordinal: i + 1, Value: v[i]})
		}
		changes = append(changes, ch)
		return nil
	}); err != nil {
		return nil, err
	}
	for _, ch := range changes {
		if broken[ch.field] {
			continue
		}
		args := append(ch.key, driver.NamedValue{Ordinal: 8, Value: ch.numbers})
		if _, err := c.ExecContext(bg, `UPDATE stats_value_num SET numbers = nullif(?8, '')
WHERE (application, day, event_type, field, pass, version, platform) = (?1, ?2, ?3, ?4, ?5, ?6, ?7)`, args); err != nil {
			return nil, err
		}
	}
	out := make([]valueField, 0, len(broken))
	for f := range broken {
		out = append(out, f)
	}
	return out, nil
}

// dropBadPaths removes, with their numbers, the fields whose path SQLite
// does not take, and returns them. registerValueField checks every path,
// so only a hand-edited registry has one; it would fail every delete
// (goneValueSQL) and every pass. The caller runs it in a transaction.
func dropBadPaths(c *sqlite3.SQLiteConn) ([]valueField, error) {
	rows, err := c.QueryContext(bg, `SELECT application, event_type, field, path FROM stats_value_field`, nil)
	if err != nil {
		return nil, err
	}
	type registered struct {
		valueField
		path driver.Value
	}
	var all []registered
	if err := eachRow(rows, func(v []driver.Value) error {
		all = append(all, registered{valueField{asString(v[0]), asString(v[1]), asString(v[2])}, v[3]})
		return nil
	}); err != nil {
		return nil, err
	}
	var bad []valueField
	for _, f := range all {
		_, _, err := queryInt64(c, `SELECT json_type('{}', ?)`, f.path)
		var se sqlite3.Error
		if err == nil || !errors.As(err, &se) || se.Code != sqlite3.ErrError {
			// Taken, or an error of another kind (the caller's to see).
			continue
		}
		if err := dropValueFields(c, `application = ?1 AND event_type = ?2 AND field = ?3`, f.application, f.eventType, f.field); err != nil {
			return nil, err
		}
		bad = append(bad, f.valueField)
	}
	return bad, nil
}

// withoutTexts is the comma-joined list all without one occurrence of each
// text of gone; ok is false if one is missing.
func withoutTexts(all, gone string) (string, bool) {
	drop := map[string]int{}
	for t := range strings.SplitSeq(gone, ",") {
		drop[t]++
	}
	kept := make([]string, 0, strings.Count(all, ",")+1)
	for t := range strings.SplitSeq(all, ",") {
		if drop[t] > 0 {
			drop[t]--
			continue
		}
		kept = append(kept, t)
	}
	for _, n := range drop {
		if n > 0 {
			return "", false
		}
	}
	return strings.Join(kept, ","), true
}
