package query

import (
	"context"
	"fmt"
	"sort"
)

// MaxSeries is the most series a breakdown over time answers: the largest
// by total.
const MaxSeries = 20

// Series is a breakdown over time: for each value of one column, a figure
// for every day of the range.
type Series struct {
	By     string        `json:"by"`
	Days   []string      `json:"days"`
	Series []SeriesEntry `json:"series"`
}

// SeriesEntry is one value's figures, one per day.
type SeriesEntry struct {
	Name   string  `json:"name"`
	Values []int64 `json:"values"`
}

// seriesColumns maps the by parameter to its column and whether it counts
// events (else distinct users).
var seriesColumns = map[string]bool{"event_type": true, "version": false, "platform": false}

// ComputeSeries breaks f's range down by day and by (event_type: events per
// type; version or platform: distinct users of each), largest first, ties
// by name, at most MaxSeries of them. It reads the summary tables when they
// are kept.
func ComputeSeries(ctx context.Context, q Querier, f Filter, by string) (*Series, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	events, ok := seriesColumns[by]
	if !ok {
		return nil, &ParamError{"by", "must be event_type, version or platform"}
	}
	measure := "COUNT(DISTINCT user_id)"
	if events {
		measure = "COUNT(*)"
	}
	where, args := f.where(f.Since, f.Until, true)
	d := dialectOf(q)
	query := d.bind(`SELECT ` + by + `, ` + d.day("time") + ` AS day, ` + measure + ` FROM event WHERE ` + where + ` GROUP BY ` + by + `, day`)
	if summariesReady(ctx, q) {
		// The summarised groups and the tail's rows (summary.go).
		if events {
			measure = "sum(events)"
		}
		where, args = f.summaryWhere(f.Since)
		tail, targs := f.tailFrom(f.Since)
		query = `SELECT ` + by + `, day, ` + measure + ` FROM (SELECT ` + by + `, day, user_id, events FROM stats_activity WHERE ` + where +
			` UNION ALL SELECT ` + by + `, substr(time, 1, 10), user_id, 1` + tail + `) GROUP BY 1, 2`
		args = append(args, targs...)
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("query series: %w", err)
	}
	defer rows.Close()
	days, index := f.dayList()
	byName := map[string][]int64{}
	for rows.Next() {
		var name, d string
		var n int64
		if err := rows.Scan(&name, &d, &n); err != nil {
			return nil, fmt.Errorf("read series: %w", err)
		}
		i, ok := index[d]
		if !ok {
			continue
		}
		if byName[name] == nil {
			byName[name] = make([]int64, len(days))
		}
		byName[name][i] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read series: %w", err)
	}
	return newSeries(by, days, byName), nil
}

// newSeries orders a breakdown's values, largest total first, ties by
// name, and keeps MaxSeries of them.
func newSeries(by string, days []string, byName map[string][]int64) *Series {
	total := map[string]int64{}
	s := &Series{By: by, Days: days, Series: []SeriesEntry{}}
	for name, v := range byName {
		for _, n := range v {
			total[name] += n
		}
		s.Series = append(s.Series, SeriesEntry{name, v})
	}
	sort.Slice(s.Series, func(i, j int) bool {
		a, b := s.Series[i].Name, s.Series[j].Name
		if total[a] != total[b] {
			return total[a] > total[b]
		}
		return a < b
	})
	if len(s.Series) > MaxSeries {
		s.Series = s.Series[:MaxSeries]
	}
	return s
}

// series is the breakdown by by over days from one pass's groups.
func (a *activityData) series(by string, days []string) *Series {
	byName := map[string][]int64{}
	for name, sh := range a.shares[by] {
		v := make([]int64, len(days))
		for i := range days {
			if seriesColumns[by] {
				v[i] = sh.dayEvents[i]
			} else {
				v[i] = sh.dayNUsers[i]
			}
		}
		byName[name] = v
	}
	return newSeries(by, days, byName)
}
