package query

import (
	"context"
	"errors"
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
// A group of stats_activity may have several rows, one per summary pass
// of its day until the writer folds the day (shard/summary.go): every
// reader adds them up (events summed, first and last times the lowest and
// highest, distinct users and sessions counted once).
// Without the tables (summaries off, PostgreSQL) every figure comes from
// the raw rows. Both give the same answers: the summaries are the raw rows'
// groups, and tests check them on random data.

// summaryVersion is the layout of the summary tables these queries read
// (shard's summaryVersion).
const summaryVersion = 6

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
	var args []any
	if since.Equal(f.Until) {
		// One day: SQLite then walks the day's rows in the order of the
		// rest of the key (pass, session_id), a GROUP BY pass, session_id
		// with no sort, which it does not see in a range of one day.
		b.WriteString("application = ? AND day = ?")
		args = []any{f.Application, since.Format(DayFormat)}
	} else {
		b.WriteString("application = ? AND day >= ? AND day <= ?")
		args = []any{f.Application, since.Format(DayFormat), f.Until.Format(DayFormat)}
	}
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

// summaryActivity is activity read from stats_activity and the tail, in
// pieces: one per day of the range and one for the tail, read two at a
// time on two of the reader's connections (eachChunk) and added up here in
// order. Each piece is one statement answering one row: the watermark, the
// day's sessions with their first and last times, and the day's groups
// without their session, each list packed into one text (a row costs the
// driver about a microsecond, more than SQLite takes to find it).
//
// A list is packed fast: its count, then each item's fields joined by tabs
// (one concat_ws, one allocation in SQLite), items separated by newlines.
// The count and the tabs of each item show whether a field holds a tab or
// a newline (the columns are NOT NULL, so concat_ws skips none); the piece
// is then read again packed safely: each field as its length in bytes, a
// space and its bytes (slower: the lengths are numbers made text).
//
// The pieces run in snapshots of their own: each reads the watermark in
// the same statement, and if a summary pass moved it between pieces (their
// watermarks differ), the pieces are read again; after summaryAttempts
// tries, the range is read raw.
func summaryActivity(ctx context.Context, q Querier, f Filter, index map[string]int) (*activityData, error) {
	for range summaryAttempts {
		a, ok, err := readSummaryActivity(ctx, q, f, index)
		if err != nil || ok {
			return a, err
		}
	}
	return activity(ctx, q, f, f.Since, index)
}

// errMoved stops the reading of pieces whose watermarks differ.
var errMoved = errors.New("the summaries' watermark moved")

// summaryAttempts is how many times summaryActivity reads the pieces
// before it reads the raw rows instead.
const summaryAttempts = 3

// packedActivity is one piece of summaryActivity: the watermark of its
// snapshot (nil: no summaries any more) and its packed sessions and groups.
type packedActivity struct {
	watermark        *int64
	sessions, groups string
	safe             bool
}

// pack is the SQL of a packed list of the rows of from: the fields, fast
// (joined by tabs, after the count) or safe (each with its length).
func pack(fields []string, from string, safe bool) string {
	if !safe {
		return `(SELECT count(*) || char(10) || group_concat(concat_ws(char(9), ` + strings.Join(fields, ", ") + `), char(10)) ` + from + `)`
	}
	var b strings.Builder
	for i, c := range fields {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("octet_length(" + c + "), ' ', " + c)
	}
	return `(SELECT group_concat(concat(` + b.String() + `), '') ` + from + `)`
}

// unpacked calls add with the fields of each item of a packed list of k
// fields; false: the list is not as packed, or add said false. A list
// packed fast must have been checked by packedCount, which gave its n
// items.
func unpacked(p string, k, n int, safe bool, add func(fields []string) bool) bool {
	if p == "" {
		return true
	}
	f := make([]string, k)
	if safe {
		var ok bool
		for p != "" {
			for i := range f {
				if f[i], p, ok = unpackField(p); !ok {
					return false
				}
			}
			if !add(f) {
				return false
			}
		}
		return true
	}
	p = p[strings.IndexByte(p, '\n')+1:]
	for range n {
		line := p
		if nl := strings.IndexByte(p, '\n'); nl >= 0 {
			line, p = p[:nl], p[nl+1:]
		}
		for i := range k - 1 {
			tab := strings.IndexByte(line, '\t')
			f[i], line = line[:tab], line[tab+1:]
		}
		f[k-1] = line
		if !add(f) {
			return false
		}
	}
	return true
}

// packedCount checks a list packed fast with k fields an item: its count n
// then n items, each of k fields joined by k-1 tabs, separated by newlines.
// If the text holds n newlines and n(k-1) tabs, no field holds either
// (each item has exactly its k-1 joining tabs: none of the fields is NULL).
func packedCount(p string, k int) (n int, ok bool) {
	if p == "" {
		return 0, true
	}
	nl := strings.IndexByte(p, '\n')
	if nl < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(p[:nl])
	if err != nil || n < 0 || strings.Count(p, "\n") != n || strings.Count(p, "\t") != n*(k-1) {
		return 0, false
	}
	return n, true
}

// readSummaryActivity reads the pieces once; ok is false when their
// watermarks differ (or the summaries went).
func readSummaryActivity(ctx context.Context, q Querier, f Filter, index map[string]int) (*activityData, bool, error) {
	pieces := make([]chunk, 0, len(index)+1)
	for d := f.Since; !d.After(f.Until); d = d.AddDate(0, 0, 1) {
		pieces = append(pieces, chunk{day: d})
	}
	pieces = append(pieces, chunk{tail: true})
	sessionFields := []string{"session_id", "lo", "hi"}
	groupFields := []string{"user_id", "event_type", "version", "platform", "events"}
	tail, targs := f.tailFrom(f.Since)
	read := func(ctx context.Context, c chunk, safe bool) (packedActivity, error) {
		var query string
		var args []any
		if c.tail {
			query = `SELECT built_id, ` +
				pack(sessionFields, `FROM (SELECT session_id, min(time) || '' AS lo, max(time) || '' AS hi`+tail+` GROUP BY session_id)`, safe) + `, ` +
				pack(append([]string{"day"}, groupFields...), `FROM (SELECT substr(time, 1, 10) AS day, user_id, event_type, version, platform, count(*) AS events`+
					tail+` GROUP BY 1, 2, 3, 4, 5)`, safe) + ` FROM stats_state WHERE id = 1`
			args = append(targs[:len(targs):len(targs)], targs...)
		} else {
			g := f
			g.Since, g.Until = c.day, c.day
			where, wargs := g.summaryWhere(c.day)
			query = `SELECT built_id, ` +
				pack(sessionFields, `FROM (SELECT session_id, min(first_time) AS lo, max(last_time) AS hi FROM stats_activity WHERE `+where+` GROUP BY pass, session_id)`, safe) + `, ` +
				pack(groupFields, `FROM stats_activity WHERE `+where, safe) + ` FROM stats_state WHERE id = 1`
			args = append(wargs[:len(wargs):len(wargs)], wargs...)
		}
		p := packedActivity{safe: safe}
		var s, g *string
		rows, err := q.QueryContext(ctx, query, args...)
		if err != nil {
			return p, fmt.Errorf("query activity: %w", err)
		}
		defer rows.Close()
		if rows.Next() {
			if err := rows.Scan(&p.watermark, &s, &g); err != nil {
				return p, fmt.Errorf("read activity: %w", err)
			}
		}
		if s != nil {
			p.sessions = *s
		}
		if g != nil {
			p.groups = *g
		}
		return p, rows.Err()
	}
	var ad *activityAdder
	var mark *int64
	err := eachChunk(ctx, pieces, func(ctx context.Context, c chunk) (packedActivity, error) { return read(ctx, c, false) },
		func(c chunk, p packedActivity) error {
			for {
				if p.watermark == nil || (mark != nil && *mark != *p.watermark) {
					return errMoved
				}
				mark = p.watermark
				if ad == nil {
					ad = newActivityAdder(len(index))
				}
				day := -1
				if !c.tail {
					day = index[c.day.Format(DayFormat)]
				}
				if ok, err := ad.addPiece(p, day, index); ok || err != nil {
					return err
				}
				// A field holds a tab or a newline: the piece again,
				// packed safely (before anything of it was added up).
				var err error
				if p, err = read(ctx, c, true); err != nil {
					return err
				}
			}
		})
	if errors.Is(err, errMoved) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return ad.finish(), true, nil
}

// addPiece adds a piece's sessions and groups: all of day i, or (i < 0,
// the tail) each of the day it starts with. It adds nothing and says
// false when a list packed fast is not as packed.
func (ad *activityAdder) addPiece(p packedActivity, i int, index map[string]int) (bool, error) {
	k := 5
	if i < 0 {
		k = 6
	}
	var ns, ng int
	if !p.safe {
		var okS, okG bool
		ns, okS = packedCount(p.sessions, 3)
		ng, okG = packedCount(p.groups, k)
		if !okS || !okG {
			return false, nil
		}
	}
	ok := unpacked(p.sessions, 3, ns, p.safe, func(s []string) bool {
		ad.addSession(s[0], s[1], s[2])
		return true
	})
	var v [3]string
	ok = ok && unpacked(p.groups, k, ng, p.safe, func(g []string) bool {
		day := i
		if i < 0 {
			var in bool
			if day, in = index[g[0]]; !in {
				return true
			}
			g = g[1:]
		}
		n, err := strconv.ParseInt(g[4], 10, 64)
		if err != nil {
			return false
		}
		v[0], v[1], v[2] = g[1], g[2], g[3]
		ad.add(day, g[0], &v, n)
		return true
	})
	if !ok {
		return false, fmt.Errorf("read activity: a piece does not unpack")
	}
	return true, nil
}

// activityAdder adds up summaryActivity's pieces. Users and the values of
// each share column become small integers; groups come by session, so
// each column's last value repeats often and is checked first. Which
// values each user had, on each day and over the range, are bits of a
// mask per user (values past the 64th of a column go to a map instead).
type activityAdder struct {
	a        *activityData
	days     int
	userIDs  map[string]int32
	users    []string
	states   []userState
	valIDs   [3]map[string]int32
	vals     [3][]string
	last     [4]string
	lastID   [4]int32
	seen     map[shareKey]struct{}
	counts   map[shareKey]int64 // distinct users per (col, val, day); day -1 for the range
	events   [3][][]int64       // per column, value, day
	lastUser int32
	lastDay  int
	dm       int // index of the user's day in states[user].days
}

type dayMask struct {
	day  int
	mask [3]uint64
}

type userState struct {
	all  [3]uint64
	days []dayMask
}

type shareKey struct {
	col, day  int16
	val, user int32
}

func newActivityAdder(days int) *activityAdder {
	ad := &activityAdder{days: days, userIDs: map[string]int32{}, seen: map[shareKey]struct{}{}, counts: map[shareKey]int64{},
		lastUser: -1, lastDay: -1,
		a: &activityData{byDay: make([]map[string]bool, days), events: make([]int64, days), users: map[string]bool{},
			sessions: map[string]*span{}, shares: map[string]map[string]*share{}}}
	for c := range ad.valIDs {
		ad.valIDs[c] = map[string]int32{}
	}
	for k := range ad.lastID {
		ad.lastID[k] = -1
	}
	return ad
}

// intern returns the small integer of s in column k (3: users). The
// strings kept are copies: s is part of a piece's text.
func (ad *activityAdder) intern(k int, s string, ids map[string]int32, names *[]string) int32 {
	if s == ad.last[k] && ad.lastID[k] >= 0 {
		return ad.lastID[k]
	}
	id, ok := ids[s]
	if !ok {
		s = strings.Clone(s)
		id = int32(len(*names))
		ids[s] = id
		*names = append(*names, s)
	}
	ad.last[k], ad.lastID[k] = s, id
	return id
}

// addSession adds a session's first and last times.
func (ad *activityAdder) addSession(sid, lo, hi string) {
	if sp := ad.a.sessions[sid]; sp == nil {
		ad.a.sessions[strings.Clone(sid)] = &span{strings.Clone(lo), strings.Clone(hi)}
	} else {
		if lo < sp.first {
			sp.first = strings.Clone(lo)
		}
		if hi > sp.last {
			sp.last = strings.Clone(hi)
		}
	}
}

// add adds n events of user u with the values v on day i.
func (ad *activityAdder) add(i int, u string, v *[3]string, n int64) {
	uid := ad.intern(3, u, ad.userIDs, &ad.users)
	if int(uid) == len(ad.states) {
		ad.states = append(ad.states, userState{})
	}
	st := &ad.states[uid]
	if uid != ad.lastUser || i != ad.lastDay {
		ad.dm = -1
		for k := range st.days {
			if st.days[k].day == i {
				ad.dm = k
				break
			}
		}
		if ad.dm < 0 {
			ad.dm = len(st.days)
			st.days = append(st.days, dayMask{day: i})
		}
		ad.lastUser, ad.lastDay = uid, i
	}
	ad.a.events[i] += n
	for c := range v {
		vid := ad.intern(c, v[c], ad.valIDs[c], &ad.vals[c])
		if int(vid) == len(ad.events[c]) {
			ad.events[c] = append(ad.events[c], make([]int64, ad.days))
		}
		ad.events[c][vid][i] += n
		if vid < 64 {
			bit := uint64(1) << vid
			if st.days[ad.dm].mask[c]&bit == 0 {
				st.days[ad.dm].mask[c] |= bit
				ad.counts[shareKey{int16(c), int16(i), vid, 0}]++
			}
			if st.all[c]&bit == 0 {
				st.all[c] |= bit
				ad.counts[shareKey{int16(c), -1, vid, 0}]++
			}
			continue
		}
		for _, k := range []shareKey{{int16(c), int16(i), vid, uid}, {int16(c), -1, vid, uid}} {
			if _, dup := ad.seen[k]; !dup {
				ad.seen[k] = struct{}{}
				k.user = 0
				ad.counts[k]++
			}
		}
	}
}

// finish turns what was added up into the activity.
func (ad *activityAdder) finish() *activityData {
	a := ad.a
	for i := range a.byDay {
		a.byDay[i] = map[string]bool{}
	}
	for uid, st := range ad.states {
		name := ad.users[uid]
		a.users[name] = true
		for _, dm := range st.days {
			a.byDay[dm.day][name] = true
		}
	}
	for c, col := range shareColumns {
		a.shares[col] = map[string]*share{}
		for vid, name := range ad.vals[c] {
			sh := &share{dayEvents: ad.events[c][vid], dayNUsers: make([]int64, ad.days),
				nUsers: ad.counts[shareKey{int16(c), -1, int32(vid), 0}]}
			for i := range ad.days {
				sh.events += sh.dayEvents[i]
				sh.dayNUsers[i] = ad.counts[shareKey{int16(c), int16(i), int32(vid), 0}]
			}
			a.shares[col][name] = sh
		}
	}
	return a
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
