package query

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
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
	if chunks, ok, err := rangeChunks(ctx, q, f); err != nil {
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
			for s := range strings.SplitSeq(*packed, ",") {
				if x, ok := valueNumber(s); ok {
					p.nums = append(p.nums, x)
				}
			}
		}
		p.skipped = n - int64(len(p.nums))
		parts = append(parts, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read value: %w", err)
	}
	return parts, nil
}
