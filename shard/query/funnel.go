package query

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Funnel step limits.
const (
	MinFunnelSteps = 2
	MaxFunnelSteps = 8
)

// FunnelStep is how many users reached one step of a funnel.
type FunnelStep struct {
	Step  string `json:"step"`
	Users int64  `json:"users"`
}

// ParseSteps reads the comma-separated event types of a funnel.
func ParseSteps(v string) ([]string, error) {
	steps := strings.Split(v, ",")
	if v == "" || len(steps) < MinFunnelSteps || len(steps) > MaxFunnelSteps {
		return nil, &ParamError{"steps", fmt.Sprintf("must list %d to %d event types, separated by commas", MinFunnelSteps, MaxFunnelSteps)}
	}
	for _, s := range steps {
		if s == "" {
			return nil, &ParamError{"steps", "an event type is empty"}
		}
	}
	return steps, nil
}

// ComputeFunnel counts the users of f who did steps[0] in the range, of them
// those who then did steps[1] at the same time or later, and so on. The
// event_type filter of f is ignored: the steps name the event types.
func ComputeFunnel(ctx context.Context, q Querier, f Filter, steps []string) ([]FunnelStep, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if len(steps) < MinFunnelSteps || len(steps) > MaxFunnelSteps {
		return nil, &ParamError{"steps", fmt.Sprintf("must list %d to %d event types", MinFunnelSteps, MaxFunnelSteps)}
	}
	f.EventType = ""
	where, args := f.where(f.Since, f.Until, true)
	if chunks, ok, err := rangeChunks(ctx, q, f); err != nil {
		return nil, err
	} else if ok {
		out, inOrder, err := streamFunnel(ctx, q, f, steps, chunks)
		if err != nil || inOrder {
			return out, err
		}
		if lo, hi, ok, err := idRange(ctx, q, f); err != nil {
			return nil, err
		} else if ok {
			where, args = f.boundedWhere(lo, hi, true)
		}
	}
	in, args := stepList(steps, args)
	d := dialectOf(q)
	rows, err := q.QueryContext(ctx, d.bind(`SELECT user_id, event_type, `+d.text("time")+` FROM event WHERE `+where+
		` AND event_type IN (`+strings.Join(in, ",")+`) ORDER BY user_id, time, id`), args...)
	if err != nil {
		return nil, fmt.Errorf("query funnel: %w", err)
	}
	defer rows.Close()
	reached := make([]int64, len(steps))
	var user string
	fu := &funnelUser{}
	first := true
	for rows.Next() {
		var u, t, tm string
		if err := rows.Scan(&u, &t, &tm); err != nil {
			return nil, fmt.Errorf("read funnel: %w", err)
		}
		if first || u != user {
			fu.advance(steps, reached)
			user, first = u, false
			fu.at, fu.k = tm, 0
		} else if tm != fu.at {
			fu.advance(steps, reached)
			fu.at = tm
		}
		fu.group = append(fu.group, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read funnel: %w", err)
	}
	fu.advance(steps, reached)
	return funnelSteps(steps, reached), nil
}

// funnelUser is one user's progress through a funnel while rows stream in.
type funnelUser struct {
	k     int      // steps done
	at    string   // the time of the rows in group
	group []string // event types of the user's rows at the time at
}

// advance applies u's group of rows of one time: each row can complete one
// step, in any order among themselves.
func (u *funnelUser) advance(steps []string, reached []int64) {
	if len(u.group) == 1 {
		// One row completes at most one step: the common case, without
		// the bookkeeping.
		if u.k < len(steps) && u.group[0] == steps[u.k] {
			reached[u.k]++
			u.k++
		}
		u.group = u.group[:0]
		return
	}
	used := make([]bool, len(u.group))
	for progress := true; progress && u.k < len(steps); {
		progress = false
		for i, t := range u.group {
			if !used[i] && u.k < len(steps) && t == steps[u.k] {
				used[i], progress = true, true
				reached[u.k]++
				u.k++
			}
		}
	}
	u.group = u.group[:0]
}

// streamFunnel is ComputeFunnel over the chunks' rows, read without
// SQLite's sort by user and time (most of the funnel's cost): rows a server
// wrote come in time order, so each user's rows come in the order the
// funnel walks them. inOrder is false, and the answer nil, as soon as a
// user's row comes with a time before the one before it (an imported
// database): the caller then sorts. The order the rows come in matters for
// nothing else: a user whose rows come in time order reaches the same steps
// as in the sorted walk.
func streamFunnel(ctx context.Context, q Querier, f Filter, steps []string, chunks []chunk) (out []FunnelStep, inOrder bool, err error) {
	_, distinct := stepList(steps, nil)
	reached := make([]int64, len(steps))
	users := map[string]*funnelUser{}
	inOrder = true
	err = eachChunk(ctx, chunks, func(ctx context.Context, c chunk) (funnelPiece, error) {
		return readFunnelChunk(ctx, q, f, distinct, c)
	}, func(_ chunk, p funnelPiece) error {
		for {
			t, u, tm, ok, err := p.next(distinct)
			if err != nil || !ok {
				return err
			}
			fu := users[u]
			switch {
			case fu == nil:
				fu = &funnelUser{at: strings.Clone(tm)}
				users[strings.Clone(u)] = fu
			case tm < fu.at:
				inOrder = false
				return errNotInOrder
			case tm > fu.at:
				fu.advance(steps, reached)
				fu.at = strings.Clone(tm)
			}
			if fu.k < len(steps) {
				fu.group = append(fu.group, t)
			}
		}
	})
	if !inOrder {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	for _, fu := range users {
		fu.advance(steps, reached)
	}
	return funnelSteps(steps, reached), true, nil
}

// errNotInOrder stops streamFunnel's reading at a user's row out of time
// order.
var errNotInOrder = errors.New("funnel rows not in time order")

// funnelPiece is the rows of one chunk whose event type is one of the
// funnel's steps, as five texts of one row each (aggregates of one scan see
// the rows in the same order): the index of each row's event type in the
// distinct steps, one digit a row; the users' lengths in bytes, comma
// separated, and the users one after the other; the same for the times.
// Lengths rather than separators, so that any byte may be in a user; five
// appends to SQLite's aggregates rather than one concatenation a row,
// which costs SQLite an allocation per operator.
type funnelPiece struct {
	codes, userLens, users, timeLens, times string
}

// readFunnelChunk reads c's rows of the event types distinct (the funnel's
// steps, each once).
func readFunnelChunk(ctx context.Context, q Querier, f Filter, distinct []any, c chunk) (funnelPiece, error) {
	cf := c.filter(f)
	cf.EventType = ""
	where, args := cf.boundedWhere(c.lo, c.hi, false)
	var code, in strings.Builder
	code.WriteString("CASE event_type")
	for i := range distinct {
		fmt.Fprintf(&code, " WHEN ?%d THEN '%d'", i+1, i)
		if i > 0 {
			in.WriteString(", ")
		}
		fmt.Fprintf(&in, "?%d", i+1)
	}
	code.WriteString(" END")
	rows, err := q.QueryContext(ctx, `SELECT coalesce(group_concat(`+code.String()+`, ''), ''),
	coalesce(group_concat(octet_length(user_id), ','), ''), coalesce(group_concat(user_id, ''), ''),
	coalesce(group_concat(octet_length(time), ','), ''), coalesce(group_concat(time, ''), '')
FROM event WHERE `+renumber(where, len(distinct)+1)+` AND +event_type IN (`+in.String()+`)`, append(distinct[:len(distinct):len(distinct)], args...)...)
	if err != nil {
		return funnelPiece{}, fmt.Errorf("query funnel: %w", err)
	}
	defer rows.Close()
	var p funnelPiece
	if rows.Next() {
		if err := rows.Scan(&p.codes, &p.userLens, &p.users, &p.timeLens, &p.times); err != nil {
			return funnelPiece{}, fmt.Errorf("read funnel: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return funnelPiece{}, fmt.Errorf("read funnel: %w", err)
	}
	return p, nil
}

// next takes the first row off p: its event type (from distinct), user and
// time. ok is false at the end; err says the texts do not fit together.
func (p *funnelPiece) next(distinct []any) (t, u, tm string, ok bool, err error) {
	if p.codes == "" {
		if p.userLens != "" || p.users != "" || p.timeLens != "" || p.times != "" {
			return "", "", "", false, errUnpack
		}
		return "", "", "", false, nil
	}
	i := int(p.codes[0] - '0')
	if i < 0 || i >= len(distinct) {
		return "", "", "", false, errUnpack
	}
	t, _ = distinct[i].(string)
	p.codes = p.codes[1:]
	if u, ok = takeField(&p.userLens, &p.users); !ok {
		return "", "", "", false, errUnpack
	}
	if tm, ok = takeField(&p.timeLens, &p.times); !ok {
		return "", "", "", false, errUnpack
	}
	return t, u, tm, true, nil
}

// errUnpack is a piece whose texts do not fit together.
var errUnpack = errors.New("read funnel: a piece does not unpack")

// takeField takes the first length off lens (comma separated) and as many
// bytes off data.
func takeField(lens, data *string) (string, bool) {
	n, i := 0, 0
	for ; i < len(*lens) && (*lens)[i] != ','; i++ {
		c := (*lens)[i]
		if c < '0' || c > '9' || i >= 10 {
			return "", false
		}
		n = n*10 + int(c-'0')
	}
	if i == 0 || n > len(*data) {
		return "", false
	}
	if i < len(*lens) {
		i++ // the comma
	}
	field := (*data)[:n]
	*lens, *data = (*lens)[i:], (*data)[n:]
	return field, true
}

// stepList appends the funnel's distinct event types to args and returns
// as many placeholders.
func stepList(steps []string, args []any) ([]string, []any) {
	distinct := map[string]bool{}
	var in []string
	for _, s := range steps {
		if !distinct[s] {
			distinct[s] = true
			in = append(in, "?")
			args = append(args, s)
		}
	}
	return in, args
}

func funnelSteps(steps []string, reached []int64) []FunnelStep {
	out := make([]FunnelStep, len(steps))
	for i, s := range steps {
		out[i] = FunnelStep{s, reached[i]}
	}
	return out
}
