package query

import (
	"context"
	"fmt"
	"math"
	"sort"
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
	where, args := f.where(f.Since, f.Until, true)
	if lo, hi, ok, err := idRange(ctx, q, f); err != nil {
		return nil, err
	} else if ok {
		where, args = f.boundedWhere(lo, hi, true)
	}
	// A value that is not valid JSON (never written by gocolytics, but
	// possible in an old database) counts as skipped instead of failing the
	// whole query.
	query := `SELECT substr(time, 1, 10), v FROM (
SELECT time, CASE WHEN json_valid(value) AND json_type(value, ?1) IN ('integer', 'real') THEN json_extract(value, ?1) END AS v
FROM event WHERE ` + renumber(where, 2) + `)`
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
		return nil, fmt.Errorf("query value: %w", err)
	}
	defer rows.Close()
	days, index := f.dayList()
	nums := make([][]float64, len(days))
	out := make([]ValueDay, len(days))
	for rows.Next() {
		var d string
		var v *float64
		if err := rows.Scan(&d, &v); err != nil {
			return nil, fmt.Errorf("read value: %w", err)
		}
		i, ok := index[d]
		if !ok {
			continue
		}
		// A number too large for a double (1e99999) reads as infinity: it
		// has no place in an average, and JSON cannot carry it.
		if v == nil || math.IsInf(*v, 0) || math.IsNaN(*v) {
			out[i].Skipped++
			continue
		}
		// -0 counts as 0, as PostgreSQL's numeric (jsonb) has it: the
		// answer is the same from either database.
		nums[i] = append(nums[i], *v+0)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read value: %w", err)
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
