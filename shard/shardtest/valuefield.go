package shardtest

import (
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// The field registry's table, checked against its meaning (shard's
// valuefield.go, DESIGN.md "The field registry"), not against the SQL that
// fills it: for each registered field (application, event type, field,
// JSON path P), the rows of event of that application and type with ids
// up to the field's built_id, grouped by day, pass, version and platform,
// give a row of stats_value_num whose events is how many they are and
// whose numbers are, in any order, the texts the raw path reads for them
// (rawNumText), comma-joined, NULL when none. A row's pass is the one
// stats_activity has for it: -1 when its day was folded after it, else
// the last pass that began below its id. No row of an unregistered field,
// no row without events, and no built_id above the summaries' watermark.

// rawNumText is the raw path's expression (shard/query's valueText) on the
// row e with the path f.path: a number's JSON text, else NULL.
const rawNumText = `CASE WHEN json_valid(e.value) AND json_type(e.value, f.path) IN ('integer', 'real') THEN e.value -> f.path END`

// valueRows reads every registered field's rows of event up to its
// built_id, one per row, with the pass that holds it.
const valueRows = `SELECT e.application, substr(e.time, 1, 10), e.event_type, f.field,
	CASE WHEN e.id <= d.folded_to THEN -1 ELSE (SELECT max(lo) FROM stats_pass WHERE lo < e.id) END,
	e.version, e.platform, 1, ` + rawNumText + `
FROM stats_value_field f JOIN event e ON e.application = f.application AND e.event_type = f.event_type AND e.id <= f.built_id
LEFT JOIN stats_day d ON d.application = e.application AND d.day = substr(e.time, 1, 10)`

// A valueGroup is one group's event count and number texts (sorted).
type valueGroup struct {
	events  int64
	numbers []string
}

func (g valueGroup) String() string {
	return fmt.Sprintf("events %d, %d numbers [%s]", g.events, len(g.numbers), cut(g.numbers))
}

// cut is a list of number texts, cut short.
func cut(texts []string) string {
	s := strings.Join(texts, ",")
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return s
}

// differ says how the groups got (from stats_value_num) and want (from
// the raw rows) differ; "" when they are equal.
func differ(got, want *valueGroup) string {
	switch {
	case got == nil:
		return fmt.Sprintf("missing, raw rows give %v", want)
	case want == nil:
		return fmt.Sprintf("%v, raw rows give none", got)
	case got.events == want.events && slices.Equal(got.numbers, want.numbers) && got.events > 0:
		return ""
	}
	// Both sorted: walk them side by side.
	var extra, missing []string
	for i, j := 0, 0; i < len(got.numbers) || j < len(want.numbers); {
		switch {
		case j == len(want.numbers) || i < len(got.numbers) && got.numbers[i] < want.numbers[j]:
			extra = append(extra, got.numbers[i])
			i++
		case i == len(got.numbers) || got.numbers[i] > want.numbers[j]:
			missing = append(missing, want.numbers[j])
			j++
		default:
			i, j = i+1, j+1
		}
	}
	return fmt.Sprintf("events %d, raw rows give %d; numbers not in the raw rows [%s], missing [%s]", got.events, want.events, cut(extra), cut(missing))
}

// readValueGroups adds up the rows of q (key columns, then events and
// numbers) into groups by the key, with or without the pass (column 4).
func readValueGroups(tb testing.TB, db *sql.Tx, q string, byPass bool) map[string]*valueGroup {
	tb.Helper()
	rows, err := db.Query(q)
	if err != nil {
		tb.Fatalf("stats_value_num: %v", err)
	}
	defer rows.Close()
	out := map[string]*valueGroup{}
	for rows.Next() {
		var key [7]sql.NullString
		var events int64
		var numbers sql.NullString
		dest := []any{}
		for i := range key {
			dest = append(dest, &key[i])
		}
		if err := rows.Scan(append(dest, &events, &numbers)...); err != nil {
			tb.Fatalf("stats_value_num: %v", err)
		}
		parts := []string{}
		for i, k := range key {
			if i == 4 && !byPass {
				continue
			}
			if !k.Valid {
				parts = append(parts, "NULL")
				continue
			}
			parts = append(parts, fmt.Sprintf("%q", k.String))
		}
		k := strings.Join(parts, " ")
		g := out[k]
		if g == nil {
			g = &valueGroup{}
			out[k] = g
		}
		g.events += events
		if numbers.Valid {
			g.numbers = append(g.numbers, strings.Split(numbers.String, ",")...)
		}
	}
	if err := rows.Err(); err != nil {
		tb.Fatalf("stats_value_num: %v", err)
	}
	for _, g := range out {
		slices.Sort(g.numbers)
	}
	return out
}

// checkValueNums fails tb unless stats_value_num of pool holds exactly
// what the raw rows give each registered field up to its built_id (above),
// and no built_id is above the summaries' watermark; all read in one
// snapshot, as the writer may run passes meanwhile.
func checkValueNums(tb testing.TB, pool *sql.DB) {
	tb.Helper()
	db, err := pool.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Rollback()
	var built int64
	if err := db.QueryRow("SELECT built_id FROM stats_state").Scan(&built); err != nil {
		tb.Fatalf("summary state: %v", err)
	}
	rows, err := db.Query("SELECT application, event_type, field, built_id FROM stats_value_field WHERE built_id > ?", built)
	if err != nil {
		tb.Fatalf("stats_value_field: %v", err)
	}
	for rows.Next() {
		var app, typ, field string
		var b int64
		if err := rows.Scan(&app, &typ, &field, &b); err != nil {
			tb.Fatal(err)
		}
		tb.Errorf("stats_value_field %q %q %q: built_id %d above the summaries' watermark %d", app, typ, field, b, built)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	rows.Close()
	const sum = `SELECT application, day, event_type, field, pass, version, platform, events, numbers FROM stats_value_num`
	// What readers read (a group's rows over its passes), then each row
	// on its own (what deletes find by pass).
	for _, byPass := range []bool{false, true} {
		got, want := readValueGroups(tb, db, sum, byPass), readValueGroups(tb, db, valueRows, byPass)
		name := "stats_value_num"
		if byPass {
			name += " by pass"
		}
		var diff []string
		for k, g := range got {
			if d := differ(g, want[k]); d != "" {
				diff = append(diff, k+": "+d)
			}
		}
		for k, w := range want {
			if got[k] == nil {
				diff = append(diff, k+": "+differ(nil, w))
			}
		}
		if len(diff) > 0 {
			slices.Sort(diff)
			tb.Errorf("%s: %d groups differ from the raw rows, e.g.\n%s", name, len(diff), strings.Join(diff[:min(len(diff), 5)], "\n"))
		}
	}
}
