package query

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The summary tables the writer keeps beside event (shard/summary.go):
// they cover the rows of event up to their watermark (stats_state's
// built_id); the stats read them for those rows and the rows above it (the
// tail, at most a minute's or about 100,000 rows) raw, added up to the same
// groups, and the funnel and value statistics read only the ids of the
// range's days and the tail. Every statement reads the watermark itself, so
// that within it the summaries and the tail meet exactly, in one snapshot.
// Without the tables (summaries off, PostgreSQL) every figure comes from
// the raw rows. Both give the same answers: the summaries are the raw rows'
// groups, and tests check them on random data.

// summaryVersion is the layout of the summary tables these queries read
// (shard's summaryVersion).
const summaryVersion = 2

// watermark is the highest id the summaries cover, as an SQL expression.
const watermark = `(SELECT built_id FROM stats_state WHERE id = 1)`

// summariesReady says whether the summary tables are there and kept.
func summariesReady(ctx context.Context, q Querier) bool {
	if dialectOf(q) != SQLite {
		// PostgreSQL (STATS_SOURCE=postgres) has no summary tables.
		return false
	}
	rows, err := q.QueryContext(ctx, `SELECT 1 FROM stats_state WHERE id = 1 AND version = ?`, summaryVersion)
	if err != nil {
		return false
	}
	defer rows.Close()
	return rows.Next()
}

// summaryWhere is f's WHERE clause on stats_activity from since: its days
// are a column of their own.
func (f *Filter) summaryWhere(since time.Time) (string, []any) {
	var b strings.Builder
	b.WriteString("application = ? AND day >= ? AND day <= ?")
	args := []any{f.Application, since.Format(DayFormat), f.Until.Format(DayFormat)}
	for _, c := range []struct{ col, v string }{{"version", f.Version}, {"platform", f.Platform}, {"event_type", f.EventType}} {
		if c.v != "" {
			b.WriteString(" AND " + c.col + " = ?")
			args = append(args, c.v)
		}
	}
	return b.String(), args
}

// tailFrom is the FROM and WHERE of f's rows from since above the
// watermark: found by id alone (NOT INDEXED keeps SQLite from walking the
// application's rows in its index instead).
func (f *Filter) tailFrom(since time.Time) (string, []any) {
	where, args := f.where(since, f.Until, true)
	return ` FROM event NOT INDEXED WHERE id > ` + watermark + ` AND ` + where, args
}

// idRange returns the lowest and highest id of f's days: from stats_day for
// the summarised rows (possibly wider than the rows left after deletes,
// never narrower), and the tail above the watermark; ok is false when the
// summaries are not ready. An empty range gives lo > hi.
func idRange(ctx context.Context, q Querier, f Filter) (lo, hi int64, ok bool, err error) {
	if !summariesReady(ctx, q) {
		return 0, 0, false, nil
	}
	days := `FROM stats_day WHERE application = ?1 AND day >= ?2 AND day <= ?3`
	rows, err := q.QueryContext(ctx, `SELECT coalesce((SELECT min(min_id) `+days+`), w + 1),
	CASE WHEN top > w THEN top ELSE coalesce((SELECT max(max_id) `+days+`), 0) END
FROM (SELECT built_id AS w, (SELECT coalesce(max(id), 0) FROM event) AS top FROM stats_state WHERE id = 1)`,
		f.Application, f.Since.Format(DayFormat), f.Until.Format(DayFormat))
	if err != nil {
		return 0, 0, false, fmt.Errorf("query id range: %w", err)
	}
	defer rows.Close()
	lo, hi = 1, 0
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

// summaryActivity is activity read from stats_activity: one query for
// the sessions' spans (grouped by day and session, in the table's own
// order), one for the groups without their session, whose distinct users
// are counted through small integer keys instead of sets of strings.
func summaryActivity(ctx context.Context, q Querier, f Filter, index map[string]int) (*activityData, error) {
	where, args := f.summaryWhere(f.Since)
	tail, targs := f.tailFrom(f.Since)
	a := &activityData{byDay: make([]map[string]bool, len(index)), events: make([]int64, len(index)), users: map[string]bool{},
		sessions: map[string]*span{}, shares: map[string]map[string]*share{}}
	for _, sq := range []struct {
		query string
		args  []any
	}{
		{`SELECT session_id, min(first_time), max(last_time) FROM stats_activity WHERE ` + where + ` GROUP BY day, session_id`, args},
		{`SELECT session_id, min(time) || '', max(time) || ''` + tail + ` GROUP BY session_id`, targs},
	} {
		if err := readSessions(ctx, q, a, sq.query, sq.args); err != nil {
			return nil, err
		}
	}

	// Each group comes as one text, its columns separated by tabs, split
	// here: a column costs the driver more than the bytes it holds. Groups
	// with a tab in a value come (rarely) from a second query, column by
	// column.
	packed := `CASE WHEN instr(user_id || event_type || version || platform, char(9)) = 0
	THEN day || char(9) || user_id || char(9) || event_type || char(9) || version || char(9) || platform || char(9) || events END`
	tailGroups := `SELECT substr(time, 1, 10) AS day, user_id, event_type, version, platform, count(*) AS events` + tail + ` GROUP BY 1, 2, 3, 4, 5`
	// The groups: packed (summarised, then the tail), then those with a
	// tab, column by column.
	queries := []struct {
		query string
		args  []any
	}{
		{`SELECT ` + packed + ` FROM stats_activity WHERE ` + where, args},
		{`SELECT ` + packed + ` FROM (` + tailGroups + `)`, targs},
		{`SELECT day, user_id, event_type, version, platform, events FROM stats_activity WHERE ` + where +
			` AND instr(user_id || event_type || version || platform, char(9)) > 0`, args},
		{`SELECT * FROM (` + tailGroups + `) WHERE instr(user_id || event_type || version || platform, char(9)) > 0`, targs},
	}
	rows, err := q.QueryContext(ctx, queries[0].query, queries[0].args...)
	if err != nil {
		return nil, fmt.Errorf("query activity: %w", err)
	}
	queries = queries[1:]
	defer func() { rows.Close() }()
	// Users and the values of each share column become small integers;
	// rows come by day and session, so each column's last value repeats
	// often and is checked first. Which values each user had, on each day
	// and over the range, are bits of a mask per user (values past the
	// 64th of a column go to a map instead).
	type dayMask struct {
		day  int
		mask [3]uint64
	}
	type userState struct {
		all  [3]uint64
		days []dayMask
	}
	type key struct {
		col, day  int16
		val, user int32
	}
	var (
		userIDs  = map[string]int32{}
		users    []string
		states   []userState
		valIDs   [3]map[string]int32
		vals     [3][]string
		last     [4]string
		lastID   [4]int32
		seen     = map[key]struct{}{}
		counts   = map[key]int64{} // distinct users per (col, val, day); day -1 for the range
		events   [3][][]int64      // per column, value, day
		lastUser = int32(-1)
		lastDay  = -1
		dm       int // index of the user's day in states[user].days
	)
	for c := range valIDs {
		valIDs[c] = map[string]int32{}
	}
	intern := func(k int, s string, ids map[string]int32, names *[]string) int32 {
		if s == last[k] && lastID[k] >= 0 {
			return lastID[k]
		}
		id, ok := ids[s]
		if !ok {
			id = int32(len(*names))
			ids[s] = id
			*names = append(*names, s)
		}
		last[k], lastID[k] = s, id
		return id
	}
	for k := range lastID {
		lastID[k] = -1
	}
	var d, u string
	var v [3]string
	var n int64
	var p sql.NullString
	next := func() (bool, error) {
		for {
			withTabs := len(queries) < 2
			for rows.Next() {
				if withTabs {
					return true, rows.Scan(&d, &u, &v[0], &v[1], &v[2], &n)
				}
				if err := rows.Scan(&p); err != nil {
					return false, err
				}
				if !p.Valid {
					continue
				}
				if !unpack(p.String, &d, &u, &v, &n) {
					return false, fmt.Errorf("unpack %q", p.String)
				}
				return true, nil
			}
			if err := rows.Err(); err != nil || len(queries) == 0 {
				return false, err
			}
			rows.Close()
			var err error
			if rows, err = q.QueryContext(ctx, queries[0].query, queries[0].args...); err != nil {
				return false, err
			}
			queries = queries[1:]
		}
	}
	for {
		ok, err := next()
		if err != nil {
			return nil, fmt.Errorf("read activity: %w", err)
		}
		if !ok {
			break
		}
		i, ok := index[d]
		if !ok {
			continue
		}
		uid := intern(3, u, userIDs, &users)
		if int(uid) == len(states) {
			states = append(states, userState{})
		}
		st := &states[uid]
		if uid != lastUser || i != lastDay {
			dm = -1
			for k := range st.days {
				if st.days[k].day == i {
					dm = k
					break
				}
			}
			if dm < 0 {
				dm = len(st.days)
				st.days = append(st.days, dayMask{day: i})
			}
			lastUser, lastDay = uid, i
		}
		a.events[i] += n
		for c := range v {
			vid := intern(c, v[c], valIDs[c], &vals[c])
			if int(vid) == len(events[c]) {
				events[c] = append(events[c], make([]int64, len(index)))
			}
			events[c][vid][i] += n
			if vid < 64 {
				bit := uint64(1) << vid
				if st.days[dm].mask[c]&bit == 0 {
					st.days[dm].mask[c] |= bit
					counts[key{int16(c), int16(i), vid, 0}]++
				}
				if st.all[c]&bit == 0 {
					st.all[c] |= bit
					counts[key{int16(c), -1, vid, 0}]++
				}
				continue
			}
			for _, k := range []key{{int16(c), int16(i), vid, uid}, {int16(c), -1, vid, uid}} {
				if _, dup := seen[k]; !dup {
					seen[k] = struct{}{}
					k.user = 0
					counts[k]++
				}
			}
		}
	}
	for i := range a.byDay {
		a.byDay[i] = map[string]bool{}
	}
	for uid, st := range states {
		name := users[uid]
		a.users[name] = true
		for _, dm := range st.days {
			a.byDay[dm.day][name] = true
		}
	}
	for c, col := range shareColumns {
		a.shares[col] = map[string]*share{}
		for vid, name := range vals[c] {
			sh := &share{dayEvents: events[c][vid], dayNUsers: make([]int64, len(index)),
				nUsers: counts[key{int16(c), -1, int32(vid), 0}]}
			for i := range len(index) {
				sh.events += sh.dayEvents[i]
				sh.dayNUsers[i] = counts[key{int16(c), int16(i), int32(vid), 0}]
			}
			a.shares[col][name] = sh
		}
	}
	return a, nil
}

// readSessions adds the sessions' first and last times that query reads to
// a.
func readSessions(ctx context.Context, q Querier, a *activityData, query string, args []any) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("query sessions: %w", err)
	}
	defer rows.Close()
	var sid, lo, hi string
	for rows.Next() {
		if err := rows.Scan(&sid, &lo, &hi); err != nil {
			return fmt.Errorf("read sessions: %w", err)
		}
		if sp := a.sessions[sid]; sp == nil {
			a.sessions[sid] = &span{lo, hi}
		} else {
			sp.first, sp.last = min(sp.first, lo), max(sp.last, hi)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read sessions: %w", err)
	}
	return nil
}

// summaryFirstDays is firstDays from stats_user and the tail: the first day
// of every user of the application whose first event is in the range or
// later.
func summaryFirstDays(ctx context.Context, q Querier, f Filter) (map[string]string, error) {
	since := f.Since.Format(DayFormat)
	first := map[string]string{}
	for _, sq := range []struct {
		query string
		args  []any
	}{
		{`SELECT user_id, substr(first_time, 1, 10) FROM stats_user WHERE application = ? AND first_time >= ?`, []any{f.Application, since}},
		// The tail's users whose first summarised event (if any) is not
		// before the range, with their first day in the tail.
		{`SELECT t.user_id, substr(t.first_time, 1, 10) FROM (SELECT user_id, min(time) || '' AS first_time FROM event NOT INDEXED
WHERE id > ` + watermark + ` AND application = ?1 GROUP BY user_id) t
WHERE NOT EXISTS (SELECT 1 FROM stats_user s WHERE s.application = ?1 AND s.user_id = t.user_id AND s.first_time < ?2)`,
			[]any{f.Application, since}},
	} {
		rows, err := q.QueryContext(ctx, sq.query, sq.args...)
		if err != nil {
			return nil, fmt.Errorf("query first days: %w", err)
		}
		for rows.Next() {
			var u, d string
			if err := rows.Scan(&u, &d); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read first days: %w", err)
			}
			if old, ok := first[u]; !ok || d < old {
				first[u] = d
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("read first days: %w", err)
		}
	}
	for u, d := range first {
		if d < since {
			delete(first, u)
		}
	}
	return first, nil
}

// unpack splits a group packed as day, user, event type, version, platform
// and events separated by tabs.
func unpack(p string, d, u *string, v *[3]string, n *int64) bool {
	var f [6]string
	for i := 0; i < 5; i++ {
		j := strings.IndexByte(p, '\t')
		if j < 0 {
			return false
		}
		f[i], p = p[:j], p[j+1:]
	}
	f[5] = p
	x, err := strconv.ParseInt(f[5], 10, 64)
	if err != nil {
		return false
	}
	*d, *u, v[0], v[1], v[2], *n = f[0], f[1], f[2], f[3], f[4], x
	return true
}
