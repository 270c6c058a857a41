package query

import (
	"context"
	"fmt"
	"strings"
)

// The summary tables the writer keeps beside event (shard/summary.go):
// when they are complete, the stats read their groups instead of the raw
// rows, and the funnel and value statistics read only the ids of the
// range's days. Until then (a database being summarised for the first time,
// or one a run with MERGE_INTERVAL=off wrote) every figure comes from the
// raw rows, as before. Both give the same answers: the summaries are the
// raw rows' groups, and a test checks them on random data.

// summariesReady says whether the summary tables are there and complete.
func summariesReady(ctx context.Context, q Querier) bool {
	if dialectOf(q) != SQLite {
		// PostgreSQL (STATS_SOURCE=postgres) has no summary tables.
		return false
	}
	rows, err := q.QueryContext(ctx, `SELECT built_id >= start_id FROM stats_state WHERE id = 1`)
	if err != nil {
		return false
	}
	defer rows.Close()
	ready := false
	if rows.Next() {
		if rows.Scan(&ready) != nil {
			return false
		}
	}
	return ready && rows.Err() == nil
}

// summaryWhere is f's WHERE clause on stats_activity: its days are a
// column of their own.
func (f *Filter) summaryWhere() (string, []any) {
	var b strings.Builder
	b.WriteString("application = ? AND day >= ? AND day <= ?")
	args := []any{f.Application, f.Since.Format(DayFormat), f.Until.Format(DayFormat)}
	for _, c := range []struct{ col, v string }{{"version", f.Version}, {"platform", f.Platform}, {"event_type", f.EventType}} {
		if c.v != "" {
			b.WriteString(" AND " + c.col + " = ?")
			args = append(args, c.v)
		}
	}
	return b.String(), args
}

// idRange returns the lowest and highest id of f's days from stats_day
// (possibly wider than the rows left after deletes, never narrower); ok is
// false when the summaries are not ready. An empty range gives lo > hi.
func idRange(ctx context.Context, q Querier, f Filter) (lo, hi int64, ok bool, err error) {
	if !summariesReady(ctx, q) {
		return 0, 0, false, nil
	}
	rows, err := q.QueryContext(ctx, `SELECT coalesce(min(min_id), 1), coalesce(max(max_id), 0) FROM stats_day WHERE application = ? AND day >= ? AND day <= ?`,
		f.Application, f.Since.Format(DayFormat), f.Until.Format(DayFormat))
	if err != nil {
		return 0, 0, false, fmt.Errorf("query id range: %w", err)
	}
	defer rows.Close()
	if rows.Next() {
		if err := rows.Scan(&lo, &hi); err != nil {
			return 0, 0, false, fmt.Errorf("query id range: %w", err)
		}
	}
	return lo, hi, true, rows.Err()
}

// boundedWhere is f's WHERE clause on event limited to the ids lo to hi:
// SQLite then walks those ids, in the event_type index when the query
// names event types (eventTypeIndex), else in the table itself, instead of
// every row of the application through its index. The other columns are
// written +col so that no other index is chosen.
func (f *Filter) boundedWhere(lo, hi int64, eventTypeIndex bool) (string, []any) {
	where, args := f.where(f.Since, f.Until, true)
	for _, col := range []string{"application", "time", "version", "platform"} {
		where = strings.ReplaceAll(where, col+" ", "+"+col+" ")
	}
	if !eventTypeIndex {
		where = strings.ReplaceAll(where, "event_type ", "+event_type ")
	}
	return "id >= ? AND id <= ? AND " + where, append([]any{lo, hi}, args...)
}

// summaryActivity is activity read from stats_activity.
func summaryActivity(ctx context.Context, q Querier, f Filter, index map[string]int) (*activityData, error) {
	where, args := f.summaryWhere()
	rows, err := q.QueryContext(ctx, `SELECT session_id, user_id, event_type, version, platform, day, events, first_time, last_time, 0
FROM stats_activity WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("query activity: %w", err)
	}
	return readActivity(rows, index)
}

// summaryFirstDays is firstDays from stats_user: the first day of every
// user of the application whose first event is in the range or later.
func summaryFirstDays(ctx context.Context, q Querier, f Filter) (map[string]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT user_id, substr(first_time, 1, 10) FROM stats_user WHERE application = ? AND first_time >= ?`,
		f.Application, f.Since.Format(DayFormat))
	if err != nil {
		return nil, fmt.Errorf("query first days: %w", err)
	}
	defer rows.Close()
	first := map[string]string{}
	for rows.Next() {
		var u, d string
		if err := rows.Scan(&u, &d); err != nil {
			return nil, fmt.Errorf("read first days: %w", err)
		}
		first[u] = d
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read first days: %w", err)
	}
	return first, nil
}
