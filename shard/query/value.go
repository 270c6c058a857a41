package query

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
)

// ValueDay is the statistics of one numeric field of value on one day. The
// figures are nil on a day without numbers; Skipped counts the events of the
// day whose field was missing, not a number, or too large for a double.
type ValueDay struct {
	Day     string   `json:"day"`
	Count   int64    `json:"count"`
	Skipped int64    `json:"skipped"`
	Avg     *float64 `json:"avg"`
	P50     *float64 `json:"p50"`
	P95     *float64 `json:"p95"`
	Min     *float64 `json:"min"`
	Max     *float64 `json:"max"`
}

// ComputeValue answers, for every day of f's range, the count, average,
// median, 95th percentile, minimum and maximum of the numeric field (a
// dotted path such as "stats.score") of the value of f's events of type
// f.EventType (required).
func ComputeValue(ctx context.Context, q Querier, f Filter, field string) ([]ValueDay, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if f.EventType == "" {
		return nil, &ParamError{"event_type", "field required"}
	}
	if field == "" {
		return nil, &ParamError{"field", "field required"}
	}
	path, err := jsonPath(field)
	if err != nil {
		return nil, err
	}
	days, index := f.dayList()
	nums := make([][]float64, len(days))
	out := make([]ValueDay, len(days))
	if ok, err := readValueFields(ctx, q, f, field, path, days, func(p valuePart) {
		if i, ok := index[p.day]; ok {
			nums[i] = append(nums[i], p.nums...)
			out[i].Skipped += p.skipped
		}
	}); err != nil {
		return nil, err
	} else if ok {
		// Read from the field registry's summary.
	} else if chunks, ok, err := rangeChunks(ctx, q, f); err != nil {
		return nil, err
	} else if ok {
		err := eachChunk(ctx, chunks, func(ctx context.Context, c chunk) ([]valuePart, error) {
			return readValueChunk(ctx, q, f, path, c)
		}, func(_ chunk, parts []valuePart) error {
			for _, p := range parts {
				if i, ok := index[p.day]; ok {
					nums[i] = append(nums[i], p.nums...)
					out[i].Skipped += p.skipped
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	} else if err := readValueRows(ctx, q, f, path, index, nums, out); err != nil {
		return nil, err
	}
	for i, d := range days {
		out[i].Day = d
		xs := nums[i]
		out[i].Count = int64(len(xs))
		if len(xs) == 0 {
			continue
		}
		sort.Float64s(xs)
		// A running mean cannot overflow where a sum of large values would.
		mean := 0.0
		for k, x := range xs {
			mean += (x - mean) / float64(k+1)
		}
		out[i].Avg = ptr(mean)
		out[i].P50 = ptr(percentile(xs, 0.5))
		out[i].P95 = ptr(percentile(xs, 0.95))
		out[i].Min = ptr(xs[0])
		out[i].Max = ptr(xs[len(xs)-1])
	}
	return out, nil
}

func ptr[T any](v T) *T { return &v }

// renumber turns the anonymous "?" of a WHERE clause into "?N", "?N+1", ...
// so that it can follow numbered parameters.
func renumber(where string, from int) string {
	out := make([]byte, 0, len(where)+16)
	for i := 0; i < len(where); i++ {
		out = append(out, where[i])
		if where[i] == '?' {
			out = fmt.Appendf(out, "%d", from)
			from++
		}
	}
	return string(out)
}

// readValueRows reads the numbers of f's rows one row at a time: every row of
// the application through its index (no summaries, PostgreSQL).
func readValueRows(ctx context.Context, q Querier, f Filter, path string, index map[string]int, nums [][]float64, out []ValueDay) error {
	where, args := f.where(f.Since, f.Until, true)
	// A value that is not valid JSON (never written by gocolytics, but
	// possible in an old database) counts as skipped instead of failing the
	// whole query. SQLite gives the number as its JSON text and PostgreSQL
	// as a float8 (which the driver writes in the shortest text that reads
	// back as the same double), both read by valueNumber, as the packed
	// pieces are.
	query := `SELECT substr(time, 1, 10), ` + valueText + ` FROM event WHERE ` + renumber(where, 2)
	if dialectOf(q) == Postgres {
		// The same path in strict mode, so that a name never reaches into
		// an array (as SQLite's does not); a missing field is NULL.
		path = "strict " + path
		query = Postgres.bind(`SELECT to_char(time, 'YYYY-MM-DD'), CASE WHEN jsonb_typeof(x) = 'number' THEN x::float8 END FROM (
SELECT time, jsonb_path_query_first(value, ?1::jsonpath, '{}', true) AS x
FROM event WHERE ` + renumber(where, 2) + `) s`)
	}
	rows, err := q.QueryContext(ctx, query, append([]any{path}, args...)...)
	if err != nil {
		return fmt.Errorf("query value: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var d string
		var v *string
		if err := rows.Scan(&d, &v); err != nil {
			return fmt.Errorf("read value: %w", err)
		}
		i, ok := index[d]
		if !ok {
			continue
		}
		x, ok := 0.0, false
		if v != nil {
			x, ok = valueNumber(*v)
		}
		if !ok {
			out[i].Skipped++
			continue
		}
		nums[i] = append(nums[i], x)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read value: %w", err)
	}
	return nil
}

// valueText is the field at the path ?1 of a row's value as JSON text when
// it is a number, else NULL (SQLite).
const valueText = `CASE WHEN json_valid(value) AND json_type(value, ?1) IN ('integer', 'real') THEN value -> ?1 END`

// valueNumber reads a number's JSON text as the nearest double, as
// PostgreSQL's float8 does. ok is false for a number too large for a
// double (1e99999): it has no place in an average, and JSON cannot carry
// it. -0 counts as 0, as PostgreSQL's numeric (jsonb) has it: the answer
// is the same from either database.
func valueNumber(s string) (x float64, ok bool) {
	x, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
		return 0, false
	}
	return x + 0, true
}

// valuePart is what one piece of the range holds for one day: its numbers
// and how many of its rows were skipped.
type valuePart struct {
	day     string
	nums    []float64
	skipped int64
}

// readValueChunk reads the numbers of f's rows in c, packed in one text per
// day (the tail's rows may be of any day of the range).
func readValueChunk(ctx context.Context, q Querier, f Filter, path string, c chunk) ([]valuePart, error) {
	cf := c.filter(f)
	where, args := cf.boundedWhere(c.lo, c.hi, true)
	query := `SELECT substr(time, 1, 10), count(*), group_concat(` + valueText + `, ',') FROM event WHERE ` + renumber(where, 2)
	if c.tail {
		query += ` GROUP BY 1`
	}
	rows, err := q.QueryContext(ctx, query, append([]any{path}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("query value: %w", err)
	}
	defer rows.Close()
	var parts []valuePart
	for rows.Next() {
		var day, packed *string
		var n int64
		if err := rows.Scan(&day, &n, &packed); err != nil {
			return nil, fmt.Errorf("read value: %w", err)
		}
		if n == 0 || day == nil {
			continue
		}
		p := valuePart{day: *day}
		if packed != nil {
			p.nums = parseNumbers(*packed, p.nums)
		}
		p.skipped = n - int64(len(p.nums))
		parts = append(parts, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read value: %w", err)
	}
	return parts, nil
}

// parseNumbers appends the numbers of a packed list of number texts
// (valueNumber) to xs.
func parseNumbers(packed string, xs []float64) []float64 {
	for s := range strings.SplitSeq(packed, ",") {
		if x, ok := valueNumber(s); ok {
			xs = append(xs, x)
		}
	}
	return xs
}

// valueFromFields counts the value statistics read from the field
// registry's summary (tests).
var valueFromFields atomic.Int64

// readValueFields reads f's numbers at field from stats_value_num, the
// summary of the fields shard's registry holds (shard/valuefield.go), and
// hands them to add a day at a time; ok is false when the field is not
// registered, not complete (its built_id short of the watermark), or the
// database has no registry: the caller reads raw. One statement, so one
// snapshot: the field's rows of the range's days, and the rows above the
// watermark (the tail) read raw. A day may come in several parts.
func readValueFields(ctx context.Context, q Querier, f Filter, field, path string, days []string, add func(valuePart)) (ok bool, err error) {
	if !summariesReady(ctx, q) {
		return false, nil
	}
	dayList, err := json.Marshal(days)
	if err != nil {
		return false, err
	}
	// ?1 the path, ?2 the application, ?3 the event type, ?4 the field,
	// ?5 the days as a JSON array, ?6 and ?7 the range's bounds on time,
	// ?8 the layout, then the version and platform when f has them.
	args := []any{path, f.Application, f.EventType, field, string(dayList),
		f.Since.Format(DayFormat), f.Until.AddDate(0, 0, 1).Format(DayFormat), summaryVersion}
	var side, raw string
	for _, c := range []struct{ col, v string }{{"version", f.Version}, {"platform", f.Platform}} {
		if c.v != "" {
			args = append(args, c.v)
			side += fmt.Sprintf(" AND %s = ?%d", c.col, len(args))
			raw += fmt.Sprintf(" AND +e.%s = ?%d", c.col, len(args))
		}
	}
	value := strings.ReplaceAll(valueText, "value", "e.value")
	// The last row says whether the field is complete in this snapshot.
	query := `WITH w AS (SELECT built_id AS w FROM stats_state WHERE id = 1 AND version = ?8),
k AS (SELECT 1 FROM stats_value_field WHERE application = ?2 AND event_type = ?3 AND field = ?4 AND path = ?1 AND built_id = (SELECT w FROM w))
SELECT 0, day, sum(events), group_concat(numbers, ',')
FROM stats_value_num WHERE application = ?2 AND day IN (SELECT value FROM json_each(?5)) AND event_type = ?3 AND field = ?4` + side + `
	AND EXISTS (SELECT 1 FROM k) GROUP BY day
UNION ALL
SELECT 2, substr(e.time, 1, 10), count(*), group_concat(` + value + `, ',')
FROM event e NOT INDEXED WHERE e.id > (SELECT w FROM w) AND e.application = ?2 AND e.time >= ?6 AND e.time < ?7 AND e.event_type = ?3` + raw + `
	AND EXISTS (SELECT 1 FROM k) GROUP BY 2
UNION ALL
SELECT 3, NULL, (SELECT count(*) FROM k), NULL`
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			// A database of a server without the registry.
			return false, nil
		}
		return false, fmt.Errorf("query value: %w", err)
	}
	defer rows.Close()
	var parts []valuePart
	complete := false
	for rows.Next() {
		var kind, n int64
		var day, packed *string
		if err := rows.Scan(&kind, &day, &n, &packed); err != nil {
			return false, fmt.Errorf("read value: %w", err)
		}
		if kind == 3 {
			complete = n > 0
		}
		if day == nil || n == 0 {
			continue
		}
		p := valuePart{day: *day}
		if packed != nil {
			p.nums = parseNumbers(*packed, nil)
		}
		p.skipped = n - int64(len(p.nums))
		parts = append(parts, p)
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("read value: %w", err)
	}
	if !complete {
		return false, nil
	}
	valueFromFields.Add(1)
	for _, p := range parts {
		add(p)
	}
	return true, nil
}
