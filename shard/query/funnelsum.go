package query

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
)

// The funnel from the summaries. When a funnel's steps are distinct event
// types, a user reaches step k at the earliest time, at or after the time
// they reached step k-1, of a row of step k's type (rows at the same time
// form one group in the sorted walk, and with distinct types none of them
// is used twice). stats_activity holds, per day, session, user, event type,
// version and platform, the count and first and last time of the rows
// (shard/summary.go), so the earliest time of a type at or after a time t
// is known from a group unless t falls strictly inside it (first < t <=
// last) and the group has more than two rows: its rows between are not
// known. summaryFunnel walks each user through the days' groups of the
// steps' types, day after day, and reads a user's raw rows of a day only
// where that happens (a blocked day: all its blocked users in one query,
// through the user_id index, within the day's ids); then the rows above
// the watermark (the tail), raw. A funnel with a repeated step, a tail row
// of a user dated before the time that user reached their last step there
// (an imported database), or summaries whose watermark keeps moving take
// the raw path (streamFunnel).

// sumFunnelResult says how readSummaryFunnel ended.
type sumFunnelResult int

const (
	sumFunnelDone     sumFunnelResult = iota
	sumFunnelMoved                    // the watermark moved between pieces: read again
	sumFunnelDisorder                 // a tail row before its user's time, or a day without its ids: raw path
)

// funnelStats counts what the summaries' funnel did, for tests.
var funnelStats struct {
	summaries, moved, disorder, blockedDays, blockedUsers, rawRows atomic.Int64
}

// funnelReadHook, when set (tests), runs after each piece of
// readSummaryFunnel is read.
var funnelReadHook func()

// distinctSteps says whether no event type repeats in steps.
func distinctSteps(steps []string) bool {
	for i, s := range steps {
		for _, t := range steps[:i] {
			if s == t {
				return false
			}
		}
	}
	return true
}

// summaryFunnel is ComputeFunnel from the summaries; ok is false when they
// cannot answer (the caller reads the raw rows).
func summaryFunnel(ctx context.Context, q Querier, f Filter, steps []string) (out []FunnelStep, ok bool, err error) {
	if !distinctSteps(steps) || !summariesReady(ctx, q) {
		return nil, false, nil
	}
	for range summaryAttempts {
		out, res, err := readSummaryFunnel(ctx, q, f, steps)
		switch {
		case err != nil:
			return nil, false, err
		case res == sumFunnelDone:
			funnelStats.summaries.Add(1)
			return out, true, nil
		case res == sumFunnelDisorder:
			funnelStats.disorder.Add(1)
			return nil, false, nil
		}
		funnelStats.moved.Add(1)
	}
	return nil, false, nil
}

// funnelItem is some of a user's rows of one step's type: a group of
// stats_activity (events rows, the earliest at first, the latest at last)
// or one raw row (events 1, first and last its time).
type funnelItem struct {
	step        int
	events      int64
	first, last string
}

// sumUser is one user's progress through the summaries' funnel: k steps
// done, the last of them at a time from lo to hi (both "" before the
// first step). The time is known exactly (lo = hi) unless the groups it
// came from leave it open; the steps reached are always known.
type sumUser struct {
	id     string
	k      int
	lo, hi string
	day    int // the piece items are of
	items  []funnelItem
}

// walk takes u as far as the items of one day (or of the tail) take it,
// and says false, changing nothing, when they do not tell whether a step
// is reached: a group that may hold a row of the step at or after the
// time of the step before, or not. The times of every item follow u.hi.
//
// Step k is reached at the earliest time of a row of its type at or after
// t, the time of step k-1 (lo <= t <= hi). A group whose last row is at or
// after hi surely holds such a row; one whose last row is from lo to hi
// may; the rest do not. The earliest such row of a group is its first if
// that is at or after hi, else somewhere from max(first, lo) to its last
// (a group of two rows: at first or at last), which gives step k's time
// its bounds: from the least lower bound of the groups that may hold one
// to the least upper bound of those that surely do.
func (u *sumUser) walk(items []funnelItem, reached []int64) bool {
	k, lo, hi := u.k, u.lo, u.hi
	for k < len(reached) {
		sure, maybe, haveLow := false, false, false
		var low, up string
		for _, it := range items {
			if it.step != k || it.last < lo {
				continue
			}
			var vlo, vhi string
			switch {
			case it.first >= hi:
				vlo, vhi = it.first, it.first
			case it.events <= 2 && it.first < lo:
				vlo, vhi = it.last, it.last
			case it.events <= 2:
				vlo, vhi = it.first, it.last
			default:
				vlo, vhi = max(lo, it.first), it.last
			}
			if it.last >= hi {
				if !sure || vhi < up {
					up = vhi
				}
				sure = true
			} else {
				maybe = true
			}
			if !haveLow || vlo < low {
				low, haveLow = vlo, true
			}
		}
		if !sure {
			if maybe {
				return false
			}
			break
		}
		lo, hi = low, up
		k++
	}
	for j := u.k; j < k; j++ {
		reached[j]++
	}
	if k > u.k {
		u.k, u.lo, u.hi = k, strings.Clone(lo), strings.Clone(hi)
	}
	return true
}

// sumPiece is one piece of readSummaryFunnel: its snapshot's watermark
// (nil: no summaries any more), the day's id range in stats_day (the
// tail's: none) and its packed items.
type sumPiece struct {
	watermark, lo, hi *int64
	packed            string
	safe              bool
}

// stepCode is the SQL expression giving an event type's index among n
// steps, as one digit, and the list of their parameters, the steps being
// bound from ?first on.
func stepCode(n, first int) (code, in string) {
	var c, i strings.Builder
	c.WriteString("CASE event_type")
	for k := range n {
		fmt.Fprintf(&c, " WHEN ?%d THEN '%d'", k+first, k)
		if k > 0 {
			i.WriteString(", ")
		}
		fmt.Fprintf(&i, "?%d", k+first)
	}
	c.WriteString(" END")
	return c.String(), i.String()
}

// readSummaryFunnel reads the pieces once.
func readSummaryFunnel(ctx context.Context, q Querier, f Filter, steps []string) ([]FunnelStep, sumFunnelResult, error) {
	pieces := make([]chunk, 0, 32)
	for d := f.Since; !d.After(f.Until); d = d.AddDate(0, 0, 1) {
		pieces = append(pieces, chunk{day: d})
	}
	pieces = append(pieces, chunk{tail: true})
	code, in := stepCode(len(steps), 3)
	// Arguments: ?1 the application, ?2 the day, the steps, then the
	// filter's.
	head := []any{f.Application, ""}
	for _, s := range steps {
		head = append(head, s)
	}
	read := func(ctx context.Context, c chunk, safe bool) (sumPiece, error) {
		var query string
		args := append([]any(nil), head...)
		if c.tail {
			from, targs := f.tailFrom(f.Since)
			query = `SELECT built_id, NULL, NULL, ` +
				pack([]string{code, "time", "user_id"}, renumber(from, len(args)+1)+` AND +event_type IN (`+in+`)`, safe) +
				` FROM stats_state WHERE id = 1`
			args = append(args, targs...)
		} else {
			g := f
			g.Since, g.Until = c.day, c.day
			where, wargs := g.summaryWhere(c.day)
			args[1] = c.day.Format(DayFormat)
			days := ` FROM stats_day WHERE application = ?1 AND day = ?2)`
			query = `SELECT built_id, (SELECT min_id` + days + `, (SELECT max_id` + days + `, ` +
				pack([]string{code, "events", "first_time", "last_time", "user_id"},
					`FROM stats_activity WHERE `+renumber(where, len(args)+1)+` AND event_type IN (`+in+`)`, safe) +
				` FROM stats_state WHERE id = 1`
			args = append(args, wargs...)
		}
		p := sumPiece{safe: safe}
		var packed *string
		rows, err := q.QueryContext(ctx, query, args...)
		if err != nil {
			return p, fmt.Errorf("query funnel: %w", err)
		}
		defer rows.Close()
		if rows.Next() {
			if err := rows.Scan(&p.watermark, &p.lo, &p.hi, &packed); err != nil {
				return p, fmt.Errorf("read funnel: %w", err)
			}
		}
		if packed != nil {
			p.packed = *packed
		}
		if funnelReadHook != nil {
			funnelReadHook()
		}
		return p, rows.Err()
	}
	reached := make([]int64, len(steps))
	users := map[string]*sumUser{}
	var mark *int64
	res := sumFunnelDone
	var touched, blocked []*sumUser
	pi := -1 // the piece's index
	err := eachChunk(ctx, pieces, func(ctx context.Context, c chunk) (sumPiece, error) { return read(ctx, c, false) },
		func(c chunk, p sumPiece) error {
			pi++
			for {
				if p.watermark == nil || (mark != nil && *mark != *p.watermark) {
					res = sumFunnelMoved
					return errMoved
				}
				mark = p.watermark
				k := 3
				if !c.tail {
					k = 5
				}
				n := 0
				if !p.safe {
					var ok bool
					if n, ok = packedCount(p.packed, k); !ok {
						// A field holds a tab or a newline: the piece
						// again, packed safely.
						var err error
						if p, err = read(ctx, c, true); err != nil {
							return err
						}
						continue
					}
				}
				touched = touched[:0]
				var bad error
				ok := unpacked(p.packed, k, n, p.safe, func(fs []string) bool {
					it := funnelItem{events: 1}
					var err error
					if it.step, err = strconv.Atoi(fs[0]); err != nil || it.step < 0 || it.step >= len(steps) {
						bad = errUnpack
						return false
					}
					user := fs[k-1]
					if c.tail {
						it.first, it.last = fs[1], fs[1]
					} else {
						if it.events, err = strconv.ParseInt(fs[1], 10, 64); err != nil {
							bad = errUnpack
							return false
						}
						it.first, it.last = fs[2], fs[3]
					}
					u := users[user]
					if u == nil {
						u = &sumUser{id: strings.Clone(user), day: -1}
						users[u.id] = u
					}
					if u.k == len(steps) {
						return true
					}
					if u.day != pi {
						u.day, u.items = pi, u.items[:0]
						touched = append(touched, u)
					}
					u.items = append(u.items, it)
					return true
				})
				if !ok {
					if bad == nil {
						bad = errUnpack
					}
					return bad
				}
				if c.tail {
					// The tail's rows come after the summarised ones only
					// if none of a user's is before the time the user got
					// to (a server's rows are).
					for _, u := range touched {
						for _, it := range u.items {
							if it.first < u.hi {
								res = sumFunnelDisorder
								return errNotInOrder
							}
						}
					}
				}
				blocked = blocked[:0]
				for _, u := range touched {
					if !u.walk(u.items, reached) {
						blocked = append(blocked, u)
					}
				}
				if len(blocked) == 0 {
					return nil
				}
				if p.lo == nil || p.hi == nil {
					res = sumFunnelDisorder
					return errNotInOrder
				}
				return blockedRows(ctx, q, f, c, steps, blocked, *p.lo, min(*p.hi, *mark), reached)
			}
		})
	if res != sumFunnelDone {
		return nil, res, nil
	}
	if err != nil {
		return nil, res, err
	}
	return funnelSteps(steps, reached), sumFunnelDone, nil
}

// blockedUsersPerQuery is how many users' rows one query reads (each a
// bound parameter).
const blockedUsersPerQuery = 500

// blockedRows walks the blocked users through their raw rows of c's day
// with ids lo to hi (the summarised ones: the tail comes later).
func blockedRows(ctx context.Context, q Querier, f Filter, c chunk, steps []string, blocked []*sumUser, lo, hi int64, reached []int64) error {
	funnelStats.blockedDays.Add(1)
	funnelStats.blockedUsers.Add(int64(len(blocked)))
	day := c.day.Format(DayFormat)
	code, in := stepCode(len(steps), 3)
	g := c.filter(f)
	g.EventType = ""
	for len(blocked) > 0 {
		part := blocked[:min(len(blocked), blockedUsersPerQuery)]
		blocked = blocked[len(part):]
		byID := make(map[string]*sumUser, len(part))
		args := []any{f.Application, day}
		for _, s := range steps {
			args = append(args, s)
		}
		var list strings.Builder
		for i, u := range part {
			if i > 0 {
				list.WriteString(", ")
			}
			fmt.Fprintf(&list, "?%d", len(args)+1)
			args = append(args, u.id)
			byID[u.id] = u
			u.items = u.items[:0]
		}
		where, wargs := g.boundedWhere(lo, hi, false)
		from := `FROM event WHERE user_id IN (` + list.String() + `) AND ` + renumber(where, len(args)+1) + ` AND +event_type IN (` + in + `)`
		args = append(args, wargs...)
		for _, safe := range []bool{false, true} {
			var packed *string
			if err := scanOne(ctx, q, []any{&packed}, `SELECT `+pack([]string{code, "time", "user_id"}, from, safe), args...); err != nil {
				return err
			}
			p := ""
			if packed != nil {
				p = *packed
			}
			n := 0
			if !safe {
				var ok bool
				if n, ok = packedCount(p, 3); !ok {
					continue
				}
			}
			ok := unpacked(p, 3, n, safe, func(fs []string) bool {
				k, err := strconv.Atoi(fs[0])
				u := byID[fs[2]]
				if err != nil || k < 0 || k >= len(steps) || u == nil {
					return false
				}
				funnelStats.rawRows.Add(1)
				u.items = append(u.items, funnelItem{step: k, events: 1, first: fs[1], last: fs[1]})
				return true
			})
			if !ok {
				return errUnpack
			}
			break
		}
		for _, u := range part {
			if !u.walk(u.items, reached) {
				return errors.New("read funnel: raw rows left a step unknown")
			}
		}
	}
	return nil
}
