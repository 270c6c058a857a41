package query

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// Stats is the answer of the stats API.
type Stats struct {
	Summary    Summary     `json:"summary"`
	Days       []Day       `json:"days"`
	EventTypes []EventType `json:"event_types"`
	Versions   []Version   `json:"versions"`
	Platforms  []Platform  `json:"platforms"`
	Retention  []Cohort    `json:"retention"`
}

// Summary covers the whole range; DAU is the users of its last day, WAU and
// MAU the distinct users of the 7 and 30 days ending with it.
type Summary struct {
	Users                int64   `json:"users"`
	NewUsers             int64   `json:"new_users"`
	Sessions             int64   `json:"sessions"`
	Events               int64   `json:"events"`
	DAU                  int64   `json:"dau"`
	WAU                  int64   `json:"wau"`
	MAU                  int64   `json:"mau"`
	MedianSessionSeconds float64 `json:"median_session_seconds"`
}

// Day is one day of the range.
type Day struct {
	Day      string `json:"day"`
	Users    int64  `json:"users"`
	NewUsers int64  `json:"new_users"`
	Sessions int64  `json:"sessions"`
	Events   int64  `json:"events"`
}

// EventType is one event type's share of the range.
type EventType struct {
	EventType string `json:"event_type"`
	Events    int64  `json:"events"`
	Users     int64  `json:"users"`
}

// Version is one version's share of the range.
type Version struct {
	Version string `json:"version"`
	Users   int64  `json:"users"`
	Events  int64  `json:"events"`
}

// Platform is one platform's share of the range.
type Platform struct {
	Platform string `json:"platform"`
	Users    int64  `json:"users"`
	Events   int64  `json:"events"`
}

// Cohort is the retention of the new users of one day: how many of them
// came back 1, 7 and 30 days later; nil while that day is after the range or
// today.
type Cohort struct {
	Cohort string `json:"cohort"`
	Users  int64  `json:"users"`
	D1     *int64 `json:"d1"`
	D7     *int64 `json:"d7"`
	D30    *int64 `json:"d30"`
}

// RetentionDays are the N of the retention columns dN.
var RetentionDays = []int{1, 7, 30}

// ComputeStats answers the stats API for f. today is the current day (see
// Today): retention of a day after it is unknown.
//
// Definitions, all on the event table with days the date part of the
// stored time:
//   - the users of a day are the distinct user_id with an event that day;
//   - a new user of a day is a user of that day whose first event ever for
//     the application (whatever the range and filters) falls on it;
//   - a session is a session_id; it belongs to the day of its first event
//     in the range, and lasts from its first to its last event there;
//   - retention dN of cohort C counts C's new users who are users of C+N.
//
// The version, platform and event_type filters apply to every figure but
// the first-event test of new users.
func ComputeStats(ctx context.Context, q Querier, f Filter, today time.Time) (*Stats, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	days := f.dayList()
	index := make(map[string]int, len(days))
	for i, d := range days {
		index[d] = i
	}
	st := &Stats{Days: make([]Day, len(days)), Retention: make([]Cohort, len(days))}
	for i, d := range days {
		st.Days[i].Day = d
	}

	act, err := activity(ctx, q, f, f.Since, index)
	if err != nil {
		return nil, err
	}
	for i := range days {
		st.Days[i].Users = int64(len(act.byDay[i]))
		st.Days[i].Events = act.events[i]
		st.Summary.Events += act.events[i]
	}
	st.Summary.Users = int64(len(act.users))
	st.Summary.DAU = st.Days[len(days)-1].Users
	if st.Summary.WAU, err = activeUsers(ctx, q, f, 7, act); err != nil {
		return nil, err
	}
	if st.Summary.MAU, err = activeUsers(ctx, q, f, 30, act); err != nil {
		return nil, err
	}

	first, err := firstDays(ctx, q, f, act.users)
	if err != nil {
		return nil, err
	}
	cohorts := make([][]string, len(days))
	for u, d := range first {
		i, ok := index[d]
		if ok && act.byDay[i][u] {
			cohorts[i] = append(cohorts[i], u)
		}
	}
	for i, d := range days {
		n := int64(len(cohorts[i]))
		st.Days[i].NewUsers = n
		st.Summary.NewUsers += n
		c := Cohort{Cohort: d, Users: n}
		for _, off := range RetentionDays {
			var v *int64
			target := f.Since.AddDate(0, 0, i+off)
			if !target.After(f.Until) && !target.After(today) {
				back := int64(0)
				for _, u := range cohorts[i] {
					if act.byDay[i+off][u] {
						back++
					}
				}
				v = &back
			}
			switch off {
			case 1:
				c.D1 = v
			case 7:
				c.D7 = v
			case 30:
				c.D30 = v
			}
		}
		st.Retention[i] = c
	}

	if err := sessions(ctx, q, f, index, st); err != nil {
		return nil, err
	}
	if err := breakdowns(ctx, q, f, st); err != nil {
		return nil, err
	}
	return st, nil
}

// activityData is which users were active on which day of the range.
type activityData struct {
	byDay  []map[string]bool
	events []int64
	users  map[string]bool
}

func activity(ctx context.Context, q Querier, f Filter, since time.Time, index map[string]int) (*activityData, error) {
	where, args := f.where(since, f.Until, true)
	rows, err := q.QueryContext(ctx, `SELECT user_id, substr(time, 1, 10) AS day, COUNT(*) FROM event WHERE `+where+` GROUP BY user_id, day`, args...)
	if err != nil {
		return nil, fmt.Errorf("query activity: %w", err)
	}
	defer rows.Close()
	a := &activityData{byDay: make([]map[string]bool, len(index)), events: make([]int64, len(index)), users: map[string]bool{}}
	for i := range a.byDay {
		a.byDay[i] = map[string]bool{}
	}
	for rows.Next() {
		var u, d string
		var n int64
		if err := rows.Scan(&u, &d, &n); err != nil {
			return nil, fmt.Errorf("read activity: %w", err)
		}
		i, ok := index[d]
		if !ok {
			continue
		}
		a.byDay[i][u] = true
		a.events[i] += n
		a.users[u] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read activity: %w", err)
	}
	return a, nil
}

// activeUsers counts the distinct users of the n days ending with the
// range's last day, from the range's activity when it covers them.
func activeUsers(ctx context.Context, q Querier, f Filter, n int, a *activityData) (int64, error) {
	if len(a.byDay) >= n {
		seen := map[string]bool{}
		for _, day := range a.byDay[len(a.byDay)-n:] {
			for u := range day {
				seen[u] = true
			}
		}
		return int64(len(seen)), nil
	}
	where, args := f.where(f.Until.AddDate(0, 0, 1-n), f.Until, true)
	rows, err := q.QueryContext(ctx, `SELECT COUNT(DISTINCT user_id) FROM event WHERE `+where, args...)
	if err != nil {
		return 0, fmt.Errorf("count active users: %w", err)
	}
	defer rows.Close()
	var c int64
	if rows.Next() {
		if err := rows.Scan(&c); err != nil {
			return 0, fmt.Errorf("count active users: %w", err)
		}
	}
	return c, rows.Err()
}

// firstDays returns, for each user of the range who has no event of the
// application before it, the day of their first event ever for the
// application. Users with an earlier event are not new in the range and
// are left out. The subqueries go through the user_id index ("+application"
// keeps SQLite from choosing the application index), where a returning
// user's oldest rows come first, so the NOT EXISTS stops at once.
func firstDays(ctx context.Context, q Querier, f Filter, users map[string]bool) (map[string]string, error) {
	first := map[string]string{}
	if len(users) == 0 {
		return first, nil
	}
	where, args := f.where(f.Since, f.Until, true)
	args = append(args, f.Application, f.Application, f.Since.Format(DayFormat))
	rows, err := q.QueryContext(ctx, `
WITH act AS (SELECT DISTINCT user_id FROM event WHERE `+where+`)
SELECT a.user_id,
       (SELECT substr(MIN(e.time), 1, 10) FROM event e WHERE e.user_id = a.user_id AND +e.application = ?)
FROM act a
WHERE NOT EXISTS (SELECT 1 FROM event e WHERE e.user_id = a.user_id AND +e.application = ? AND e.time < ?)`, args...)
	if err != nil {
		return nil, fmt.Errorf("query first days: %w", err)
	}
	defer rows.Close()
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

// sessions fills the sessions of each day and the summary's count and
// median length.
func sessions(ctx context.Context, q Querier, f Filter, index map[string]int, st *Stats) error {
	where, args := f.where(f.Since, f.Until, true)
	rows, err := q.QueryContext(ctx, `SELECT MIN(time) || '', MAX(time) || '' FROM event WHERE `+where+` GROUP BY session_id`, args...)
	if err != nil {
		return fmt.Errorf("query sessions: %w", err)
	}
	defer rows.Close()
	var lengths []float64
	for rows.Next() {
		var lo, hi string
		if err := rows.Scan(&lo, &hi); err != nil {
			return fmt.Errorf("read sessions: %w", err)
		}
		if i, ok := index[dayOf(lo)]; ok {
			st.Days[i].Sessions++
		}
		a, errA := parseTime(lo)
		b, errB := parseTime(hi)
		if errA == nil && errB == nil {
			lengths = append(lengths, b.Sub(a).Seconds())
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read sessions: %w", err)
	}
	st.Summary.Sessions = int64(len(lengths))
	sort.Float64s(lengths)
	st.Summary.MedianSessionSeconds = percentile(lengths, 0.5)
	return nil
}

func dayOf(t string) string {
	if len(t) < 10 {
		return t
	}
	return t[:10]
}

// percentile is the p-quantile of sorted values, interpolated linearly
// between the two nearest ranks (as numpy and pandas do by default); 0 for
// no values.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	pos := p * float64(len(sorted)-1)
	lo := int(pos)
	if lo+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	frac := pos - float64(lo)
	return sorted[lo] + (sorted[lo+1]-sorted[lo])*frac
}

// breakdowns fills the event types, versions and platforms, by events
// (event types) or users (versions, platforms), most first, ties by name.
func breakdowns(ctx context.Context, q Querier, f Filter, st *Stats) error {
	where, args := f.where(f.Since, f.Until, true)
	for _, col := range []string{"event_type", "version", "platform"} {
		rows, err := q.QueryContext(ctx, `SELECT `+col+`, COUNT(*), COUNT(DISTINCT user_id) FROM event WHERE `+where+` GROUP BY `+col, args...)
		if err != nil {
			return fmt.Errorf("query %s breakdown: %w", col, err)
		}
		type share struct {
			name          string
			events, users int64
		}
		var list []share
		for rows.Next() {
			var s share
			if err := rows.Scan(&s.name, &s.events, &s.users); err != nil {
				rows.Close()
				return fmt.Errorf("read %s breakdown: %w", col, err)
			}
			list = append(list, s)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("read %s breakdown: %w", col, err)
		}
		sort.Slice(list, func(i, j int) bool {
			a, b := list[i], list[j]
			ka, kb := a.users, b.users
			if col == "event_type" {
				ka, kb = a.events, b.events
			}
			if ka != kb {
				return ka > kb
			}
			return a.name < b.name
		})
		switch col {
		case "event_type":
			st.EventTypes = make([]EventType, len(list))
			for i, s := range list {
				st.EventTypes[i] = EventType{s.name, s.events, s.users}
			}
		case "version":
			st.Versions = make([]Version, len(list))
			for i, s := range list {
				st.Versions[i] = Version{s.name, s.users, s.events}
			}
		case "platform":
			st.Platforms = make([]Platform, len(list))
			for i, s := range list {
				st.Platforms[i] = Platform{s.name, s.users, s.events}
			}
		}
	}
	return nil
}
