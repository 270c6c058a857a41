package shardtest

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

// summaryChecks are pairs of queries that must answer the same rows: a
// summary table, and the same figures computed from event's raw rows.
var summaryChecks = []struct{ name, summary, raw string }{
	// A group's rows over all its passes.
	{"stats_activity",
		`SELECT application, day, session_id, user_id, event_type, version, platform, sum(events), min(first_time), max(last_time)
FROM stats_activity GROUP BY 1, 2, 3, 4, 5, 6, 7`,
		`SELECT application, substr(time, 1, 10), session_id, user_id, event_type, version, platform, count(*), min(time) || '', max(time) || ''
FROM event WHERE id <= (SELECT built_id FROM stats_state) GROUP BY 1, 2, 3, 4, 5, 6, 7`},
	// Each row: the rows of its group in its pass, which deletes find by
	// id (folded: the day's rows up to its folded_to; else the last pass
	// that began below the id).
	{"stats_activity by pass",
		`SELECT application, day, pass, session_id, user_id, event_type, version, platform, events, first_time, last_time FROM stats_activity`,
		`SELECT e.application, substr(e.time, 1, 10), ` + eventPass + `,
	e.session_id, e.user_id, e.event_type, e.version, e.platform, count(*), min(e.time) || '', max(e.time) || ''
FROM event e JOIN stats_day d ON d.application = e.application AND d.day = substr(e.time, 1, 10)
WHERE e.id <= (SELECT built_id FROM stats_state) GROUP BY 1, 2, 3, 4, 5, 6, 7, 8`},
	// A day not pending (0) has all its rows folded; pending is 1 (rows
	// to fold), or 2 (too large to fold: its passes' rows stay).
	{"stats_day pending",
		`SELECT application, day FROM stats_activity WHERE pass >= 0 EXCEPT SELECT application, day FROM stats_day WHERE pending
UNION ALL SELECT application, day FROM stats_day WHERE pending NOT IN (0, 1, 2)`,
		`SELECT '', '' WHERE 0`},
	// stats_value: each group's events by pass (its numbers: checkValues).
	{"stats_value events",
		`SELECT application, day, event_type, pass, version, platform, events FROM stats_value WHERE field = ''`,
		`SELECT e.application, substr(e.time, 1, 10), e.event_type, ` + eventPass + `, e.version, e.platform, count(*)
FROM event e JOIN stats_day d ON d.application = e.application AND d.day = substr(e.time, 1, 10)
WHERE e.id <= (SELECT built_id FROM stats_state) GROUP BY 1, 2, 3, 4, 5, 6`},
	// Rows of a group left out ('*') or of a field, never more than its
	// events; a day not pending has only folded rows.
	{"stats_value rows",
		`SELECT application, day, event_type, pass, version, platform FROM stats_value v WHERE field <> '' AND (events <= 0
	OR events > coalesce((SELECT events FROM stats_value e WHERE (e.application, e.day, e.event_type, e.field, e.pass, e.version, e.platform) =
		(v.application, v.day, v.event_type, '', v.pass, v.version, v.platform)), 0)
	OR (field = '*') <> (numbers IS NULL))
UNION ALL SELECT application, day, '', pass, '', '' FROM stats_value WHERE pass >= 0 AND (application, day) NOT IN (SELECT application, day FROM stats_day WHERE pending)`,
		`SELECT '', '', '', 0, '', '' WHERE 0`},
	{"stats_user",
		`SELECT application, user_id, first_time FROM stats_user`,
		`SELECT application, user_id, min(time) || '' FROM event WHERE id <= (SELECT built_id FROM stats_state) GROUP BY 1, 2`},
	{"stats_day events",
		`SELECT application, day, events FROM stats_day WHERE events > 0`,
		`SELECT application, substr(time, 1, 10), count(*) FROM event WHERE id <= (SELECT built_id FROM stats_state) GROUP BY 1, 2`},
	// The id bounds of a day may be wider than its rows (deletes leave
	// them), never narrower.
	{"stats_day",
		`SELECT application, substr(time, 1, 10) FROM event e WHERE id <= (SELECT built_id FROM stats_state) AND NOT EXISTS (SELECT 1 FROM stats_day d
WHERE d.application = e.application AND d.day = substr(e.time, 1, 10) AND e.id BETWEEN d.min_id AND d.max_id)`,
		`SELECT '', '' WHERE 0`},
}

// eventPass is the pass of the row of stats_activity or stats_value that
// holds the row e of event (d its day's stats_day row).
const eventPass = `CASE WHEN e.id <= d.folded_to THEN -1 ELSE (SELECT max(lo) FROM stats_pass WHERE lo < e.id) END`

// CheckSummaries fails tb unless the summary tables of the database at path
// are equal to what event's rows up to their watermark give, and cover
// every row.
func CheckSummaries(tb testing.TB, path string) {
	tb.Helper()
	CheckSummariesPart(tb, path)
	db := SQL(tb, path)
	var built, top int64
	if err := db.QueryRow("SELECT built_id, (SELECT coalesce(max(id), 0) FROM event) FROM stats_state").Scan(&built, &top); err != nil || built < top {
		tb.Fatalf("summary state: built %d, newest row %d, %v; want every row summarised", built, top, err)
	}
}

// CheckSummariesPart fails tb unless the summary tables of the database at
// path are equal to what event's rows up to their watermark give.
func CheckSummariesPart(tb testing.TB, path string) {
	tb.Helper()
	db := SQL(tb, path)
	var built int64
	if err := db.QueryRow("SELECT built_id FROM stats_state").Scan(&built); err != nil {
		tb.Fatalf("summary state: %v", err)
	}
	checkValues(tb, db)
	for _, c := range summaryChecks {
		for _, q := range [][2]string{{c.summary, c.raw}, {c.raw, c.summary}} {
			var n int
			if err := db.QueryRow("SELECT count(*) FROM (" + q[0] + " EXCEPT " + q[1] + ")").Scan(&n); err != nil {
				tb.Fatal(err)
			}
			if n != 0 {
				tb.Errorf("%s: %d rows differ from the raw rows, such as %s", c.name, n, firstRows(tb, db, q[0]+" EXCEPT "+q[1]))
			}
		}
	}
}

// WaitSummaries waits until the summary tables of the database at path
// cover every row of event (the writer summarises in the background).
func WaitSummaries(tb testing.TB, path string) {
	tb.Helper()
	db := SQL(tb, path)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var built, top int64
		err := db.QueryRow("SELECT built_id, (SELECT coalesce(max(id), 0) FROM event) FROM stats_state").Scan(&built, &top)
		if err == nil && built >= top {
			return
		}
		if err != nil && err != sql.ErrNoRows {
			tb.Logf("summary state: %v", err)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("summary tables not built after 2 minutes (built %d, newest row %d, %v)", built, top, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkValues fails tb unless stats_value's row of every field any row's
// value has a number at (found here by encoding/json; the row of its full
// key, fieldKey) holds the very number texts the value statistics' raw
// path reads there from its group's rows, except in groups with rows left
// out ('*': their readers read the raw rows).
func checkValues(tb testing.TB, sdb *sql.DB) {
	tb.Helper()
	// One snapshot: the writer may be deleting meanwhile.
	db, err := sdb.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Rollback()
	fields := map[string]bool{}
	rows, err := db.Query(`SELECT value FROM event WHERE id <= (SELECT built_id FROM stats_state)`)
	if err != nil {
		tb.Fatal(err)
	}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			tb.Fatal(err)
		}
		var x any
		d := json.NewDecoder(strings.NewReader(v))
		d.UseNumber()
		if d.Decode(&x) == nil {
			numericFields(x, "", fields)
		}
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	rows.Close()
	const group = `application || char(0) || day || char(0) || event_type || char(0) || pass || char(0) || version || char(0) || platform`
	left := map[string]bool{}
	for g := range queryTexts(tb, db, `SELECT `+group+`, '' FROM stats_value WHERE field = '*'`) {
		left[g] = true
	}
	for f := range fields {
		path := `$."` + strings.ReplaceAll(f, ".", `"."`) + `"`
		want := queryTexts(tb, db, `SELECT `+group+`, group_concat(value -> ?1, ',') FROM (SELECT e.application, substr(e.time, 1, 10) AS day, e.event_type, `+
			eventPass+` AS pass, e.version, e.platform, e.value
FROM event e JOIN stats_day d ON d.application = e.application AND d.day = substr(e.time, 1, 10)
WHERE e.id <= (SELECT built_id FROM stats_state) AND json_valid(e.value) AND json_type(e.value, ?1) IN ('integer', 'real')) GROUP BY 1`, path)
		got := queryTexts(tb, db, `SELECT `+group+`, numbers FROM stats_value WHERE field = ?1`, fieldKey(f))
		for g, w := range want {
			if !left[g] && sortedTexts(got[g]) != sortedTexts(w) {
				tb.Errorf("stats_value %q of %q: numbers %q, want %q", f, g, got[g], w)
			}
		}
		for g, n := range got {
			if _, ok := want[g]; !ok && !left[g] {
				tb.Errorf("stats_value %q of %q: numbers %q, want none", f, g, n)
			}
		}
	}
}

// numericFields adds to out the dotted paths of object keys (letters,
// digits, _ and -) at which x has a number, arrays never entered.
func numericFields(x any, prefix string, out map[string]bool) {
	m, ok := x.(map[string]any)
	if !ok {
		return
	}
	for k, v := range m {
		if k == "" || strings.Trim(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "" {
			continue
		}
		switch v := v.(type) {
		case json.Number:
			out[prefix+k] = true
		case map[string]any:
			numericFields(v, prefix+k+".", out)
		}
	}
}

// queryTexts answers a query of two text columns as a map.
func queryTexts(tb testing.TB, db *sql.Tx, q string, args ...any) map[string]string {
	tb.Helper()
	rows, err := db.Query(q, args...)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k string
		var v sql.NullString
		if err := rows.Scan(&k, &v); err != nil {
			tb.Fatal(err)
		}
		out[k] = v.String
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// sortedTexts is a list joined by commas, sorted.
func sortedTexts(s string) string {
	l := strings.Split(s, ",")
	sort.Strings(l)
	return strings.Join(l, ",")
}

// firstRows is the first rows of the query q, as text.
func firstRows(tb testing.TB, db *sql.DB, q string) string {
	tb.Helper()
	rows, err := db.Query(q + " LIMIT 3")
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		v := make([]any, len(cols))
		p := make([]any, len(cols))
		for i := range v {
			p[i] = &v[i]
		}
		if err := rows.Scan(p...); err != nil {
			return err.Error()
		}
		out = append(out, fmt.Sprintf("%v", v))
	}
	return strings.Join(out, "; ")
}

// fieldKey is json_tree's full key of the dotted path f (as shard/query's).
func fieldKey(f string) string {
	key := "$"
	for _, name := range strings.Split(f, ".") {
		plain := name != "" && strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") == "" && (name[0] < '0' || name[0] > '9')
		if plain {
			key += "." + name
		} else {
			key += `."` + name + `"`
		}
	}
	return key
}
