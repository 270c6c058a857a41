package query

import (
	"context"
	"database/sql"
	"encoding/json"
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
	// Series are the breakdowns over time asked for, if any (see
	// ComputeSeries).
	Series []*Series `json:"series,omitempty"`
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
// the first-event test of new users. Each of series ("event_type",
// "version", "platform") adds that breakdown over time, as ComputeSeries
// answers it, from the same pass over the events.
func ComputeStats(ctx context.Context, q Querier, f Filter, today time.Time, series ...string) (*Stats, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	for _, by := range series {
		if _, ok := seriesColumns[by]; !ok {
			return nil, &ParamError{"series", "must list event_type, version or platform"}
		}
	}
	days, index := f.dayList()
	st := &Stats{Days: make([]Day, len(days)), Retention: make([]Cohort, len(days))}
	for i, d := range days {
		st.Days[i].Day = d
	}

	summarised := summariesReady(ctx, q)
	var act *activityData
	var err error
	if summarised {
		act, err = summaryActivity(ctx, q, f, index)
	} else {
		act, err = activity(ctx, q, f, f.Since, index)
	}
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
	if st.Summary.WAU, err = activeUsers(ctx, q, f, 7, act, summarised); err != nil {
		return nil, err
	}
	if st.Summary.MAU, err = activeUsers(ctx, q, f, 30, act, summarised); err != nil {
		return nil, err
	}

	var first map[string]string
	if summarised {
		first, err = summaryFirstDays(ctx, q, f)
	} else {
		first, err = firstDays(ctx, q, f, act)
	}
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

	sessions(act, index, st)
	breakdowns(act, st)
	for _, by := range series {
		st.Series = append(st.Series, act.series(by, days))
	}
	return st, nil
}

// activityData is what one pass over the range's events gathers: which
// users were active on which day, the events of each day, each session's
// first and last time, and the shares of each event type, version and
// platform (overall and per day).
type activityData struct {
	byDay    []map[string]bool
	events   []int64
	users    map[string]bool
	sessions map[string]*span
	shares   map[string]map[string]*share // column -> value -> share
	// minID is the lowest id of the range's rows.
	minID int64
}

type span struct{ first, last string }

// share is one value's part of the range: events, distinct users, and per
// day its events and distinct users.
type share struct {
	events    int64
	dayEvents []int64
	// nUsers and dayNUsers count the distinct users, overall and per day;
	// users and dayUsers are their sets while reading raw groups.
	nUsers    int64
	dayNUsers []int64
	users     map[string]bool
	dayUsers  []map[string]bool
}

var shareColumns = []string{"event_type", "version", "platform"}

// activity reads the range in one pass, grouped finely enough that every
// figure can be added up exactly from the groups: by session, user, event
// type, version, platform and day.
func activity(ctx context.Context, q Querier, f Filter, since time.Time, index map[string]int) (*activityData, error) {
	where, args := f.where(since, f.Until, true)
	dl := dialectOf(q)
	rows, err := q.QueryContext(ctx, dl.bind(`SELECT session_id, user_id, event_type, version, platform, `+dl.day("time")+` AS day,
COUNT(*), `+dl.text("MIN(time)")+`, `+dl.text("MAX(time)")+`, MIN(id)
FROM event WHERE `+where+` GROUP BY session_id, user_id, event_type, version, platform, day`), args...)
	if err != nil {
		return nil, fmt.Errorf("query activity: %w", err)
	}
	return readActivity(rows, index)
}

// readActivity reads activity's groups: session, user, event type,
// version, platform, day, events, first and last time, lowest id.
func readActivity(rows *sql.Rows, index map[string]int) (*activityData, error) {
	defer rows.Close()
	a := &activityData{byDay: make([]map[string]bool, len(index)), events: make([]int64, len(index)), users: map[string]bool{},
		sessions: map[string]*span{}, shares: map[string]map[string]*share{}}
	for i := range a.byDay {
		a.byDay[i] = map[string]bool{}
	}
	for _, c := range shareColumns {
		a.shares[c] = map[string]*share{}
	}
	// Strings repeat across groups: one copy of each keeps the sets small.
	intern := map[string]string{}
	in := func(s string) string {
		if v, ok := intern[s]; ok {
			return v
		}
		intern[s] = s
		return s
	}
	var sid, u, d, lo, hi string
	var vals [3]string
	var n, id int64
	for rows.Next() {
		if err := rows.Scan(&sid, &u, &vals[0], &vals[1], &vals[2], &d, &n, &lo, &hi, &id); err != nil {
			return nil, fmt.Errorf("read activity: %w", err)
		}
		i, ok := index[d]
		if !ok {
			continue
		}
		if a.minID == 0 || id < a.minID {
			a.minID = id
		}
		u = in(u)
		a.byDay[i][u] = true
		a.events[i] += n
		a.users[u] = true
		if sp := a.sessions[sid]; sp == nil {
			a.sessions[sid] = &span{lo, hi}
		} else {
			sp.first, sp.last = min(sp.first, lo), max(sp.last, hi)
		}
		for c, col := range shareColumns {
			v := in(vals[c])
			sh := a.shares[col][v]
			if sh == nil {
				sh = &share{users: map[string]bool{}, dayEvents: make([]int64, len(index)), dayUsers: make([]map[string]bool, len(index))}
				a.shares[col][v] = sh
			}
			sh.events += n
			sh.users[u] = true
			sh.dayEvents[i] += n
			if sh.dayUsers[i] == nil {
				sh.dayUsers[i] = map[string]bool{}
			}
			sh.dayUsers[i][u] = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read activity: %w", err)
	}
	for _, col := range shareColumns {
		for _, sh := range a.shares[col] {
			sh.nUsers = int64(len(sh.users))
			sh.dayNUsers = make([]int64, len(index))
			for i, us := range sh.dayUsers {
				sh.dayNUsers[i] = int64(len(us))
			}
		}
	}
	return a, nil
}

// activeUsers counts the distinct users of the n days ending with the
// range's last day, from the range's activity when it covers them, else
// from the summaries when summarised, else from the raw rows.
func activeUsers(ctx context.Context, q Querier, f Filter, n int, a *activityData, summarised bool) (int64, error) {
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
	query := dialectOf(q).bind(`SELECT COUNT(DISTINCT user_id) FROM event WHERE ` + where)
	if summarised {
		since := f.Until.AddDate(0, 0, 1-n)
		where, args = f.summaryWhere(since)
		tail, targs := f.tailFrom(since)
		query = `SELECT COUNT(DISTINCT user_id) FROM (SELECT user_id FROM stats_activity WHERE ` + where + ` UNION ALL SELECT user_id` + tail + `)`
		args = append(args, targs...)
	}
	rows, err := q.QueryContext(ctx, query, args...)
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
// application. Users with an earlier event are not new in the range and are
// left out.
//
// "An earlier event" is looked for in two places that together hold every
// row: rows with an id below the range's lowest (a.minID), through the
// user_id index bounded by that id, where a returning player's oldest row
// comes first, so each check stops at once; and rows from a.minID on whose
// time is before the range (rows stored out of time order, as an imported
// database may have), in one scan of those rows by id.
func firstDays(ctx context.Context, q Querier, f Filter, a *activityData) (map[string]string, error) {
	first := map[string]string{}
	if len(a.users) == 0 {
		return first, nil
	}
	if dialectOf(q) == Postgres {
		return firstDaysPostgres(ctx, q, f, a)
	}
	since := f.Since.Format(DayFormat)
	late := map[string]bool{}
	rows, err := q.QueryContext(ctx, `SELECT DISTINCT user_id FROM event NOT INDEXED WHERE id >= ? AND time < ? AND application = ?`,
		a.minID, since, f.Application)
	if err != nil {
		return nil, fmt.Errorf("query first days: %w", err)
	}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read first days: %w", err)
		}
		late[u] = true
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return nil, fmt.Errorf("read first days: %w", err)
	}

	js, err := userList(a, late)
	if err != nil {
		return nil, err
	}
	firstDay := firstDayOf(f, "(SELECT substr(MIN(e.time), 1, 10) FROM event e WHERE e.user_id = a.value AND +e.application = ?1)")
	rows, err = q.QueryContext(ctx, `SELECT a.value, `+firstDay+` FROM json_each(?2) a
WHERE NOT EXISTS (SELECT 1 FROM event e WHERE e.user_id = a.value AND e.id < ?3 AND +e.application = ?1 AND e.time < ?4)`,
		f.Application, js, a.minID, since)
	if err != nil {
		return nil, fmt.Errorf("query first days: %w", err)
	}
	return readFirstDays(rows, f, a, first)
}

// firstDaysPostgres is firstDays in PostgreSQL: ids there come from every
// node and say nothing of time, so "an earlier event" is looked for
// directly, through the (application, time) index.
func firstDaysPostgres(ctx context.Context, q Querier, f Filter, a *activityData) (map[string]string, error) {
	js, err := userList(a, nil)
	if err != nil {
		return nil, err
	}
	firstDay := firstDayOf(f, "(SELECT to_char(MIN(e.time), 'YYYY-MM-DD') FROM event e WHERE e.user_id = a.value AND e.application = $1)")
	rows, err := q.QueryContext(ctx, `SELECT a.value, `+firstDay+` FROM jsonb_array_elements_text($2::jsonb) AS a(value)
WHERE NOT EXISTS (SELECT 1 FROM event e WHERE e.user_id = a.value AND e.application = $1 AND e.time < $3)`,
		f.Application, js, f.Since.Format(DayFormat))
	if err != nil {
		return nil, fmt.Errorf("query first days: %w", err)
	}
	return readFirstDays(rows, f, a, map[string]string{})
}

// userList is the range's users but those in late, as a JSON list.
func userList(a *activityData, late map[string]bool) (string, error) {
	list := make([]string, 0, len(a.users))
	for u := range a.users {
		if !late[u] {
			list = append(list, u)
		}
	}
	js, err := json.Marshal(list)
	return string(js), err
}

// firstDayOf is what the first-days query selects as a new user's first
// day: without filters NULL, their first day in the range; with them, it
// may be a day the filters leave out, so it is read from the user's rows
// with expr (a new user's rows are all in the range).
func firstDayOf(f Filter, expr string) string {
	if f.Version == "" && f.Platform == "" && f.EventType == "" {
		return "NULL"
	}
	return expr
}

// readFirstDays reads the new users and their first days (NULL: their
// first day in the range) into first, and closes rows.
func readFirstDays(rows *sql.Rows, f Filter, a *activityData, first map[string]string) (map[string]string, error) {
	defer rows.Close()
	for rows.Next() {
		var u string
		var d *string
		if err := rows.Scan(&u, &d); err != nil {
			return nil, fmt.Errorf("read first days: %w", err)
		}
		if d != nil {
			first[u] = *d
			continue
		}
		for i, day := range a.byDay {
			if day[u] {
				first[u] = f.Since.AddDate(0, 0, i).Format(DayFormat)
				break
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read first days: %w", err)
	}
	return first, nil
}

// sessions fills the sessions of each day and the summary's count and
// median length.
func sessions(a *activityData, index map[string]int, st *Stats) {
	lengths := make([]float64, 0, len(a.sessions))
	for _, sp := range a.sessions {
		if i, ok := index[dayOf(sp.first)]; ok {
			st.Days[i].Sessions++
		}
		lo, errLo := parseTime(sp.first)
		hi, errHi := parseTime(sp.last)
		if errLo == nil && errHi == nil {
			lengths = append(lengths, hi.Sub(lo).Seconds())
		}
	}
	st.Summary.Sessions = int64(len(a.sessions))
	sort.Float64s(lengths)
	st.Summary.MedianSessionSeconds = percentile(lengths, 0.5)
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
func breakdowns(a *activityData, st *Stats) {
	st.EventTypes, st.Versions, st.Platforms = []EventType{}, []Version{}, []Platform{}
	for _, col := range shareColumns {
		names := sortedShares(a.shares[col], col == "event_type")
		for _, name := range names {
			sh := a.shares[col][name]
			users := sh.nUsers
			switch col {
			case "event_type":
				st.EventTypes = append(st.EventTypes, EventType{name, sh.events, users})
			case "version":
				st.Versions = append(st.Versions, Version{name, users, sh.events})
			case "platform":
				st.Platforms = append(st.Platforms, Platform{name, users, sh.events})
			}
		}
	}
}

// sortedShares returns the values of a column, most events (byEvents) or
// users first, ties by name.
func sortedShares(shares map[string]*share, byEvents bool) []string {
	names := make([]string, 0, len(shares))
	for n := range shares {
		names = append(names, n)
	}
	key := func(n string) int64 {
		if byEvents {
			return shares[n].events
		}
		return shares[n].nUsers
	}
	sort.Slice(names, func(i, j int) bool {
		if ki, kj := key(names[i]), key(names[j]); ki != kj {
			return ki > kj
		}
		return names[i] < names[j]
	})
	return names
}
