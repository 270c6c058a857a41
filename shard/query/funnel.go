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
	err = eachChunk(ctx, chunks, func(ctx context.Context, c chunk) (string, error) {
		return readFunnelChunk(ctx, q, f, distinct, c)
	}, func(_ chunk, packed string) error {
		for s := packed; s != ""; {
			var t, u, tm string
			var ok bool
			if t, u, tm, s, ok = unpackFunnelRow(s, distinct); !ok {
				return fmt.Errorf("read funnel: a row does not unpack")
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
		return nil
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

// readFunnelChunk reads the rows of c whose event type is one of distinct
// (the funnel's steps, each once), packed in one text: for each row the
// index of its event type in distinct as one digit, then the user and the
// time, each as its length in bytes, a space and its bytes (any byte may
// be in them). "" when c has no such rows.
func readFunnelChunk(ctx context.Context, q Querier, f Filter, distinct []any, c chunk) (string, error) {
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
	rows, err := q.QueryContext(ctx, `SELECT group_concat(`+code.String()+` || octet_length(user_id) || ' ' || user_id || octet_length(time) || ' ' || time, '')
FROM event WHERE `+renumber(where, len(distinct)+1)+` AND +event_type IN (`+in.String()+`)`, append(distinct[:len(distinct):len(distinct)], args...)...)
	if err != nil {
		return "", fmt.Errorf("query funnel: %w", err)
	}
	defer rows.Close()
	var packed *string
	if rows.Next() {
		if err := rows.Scan(&packed); err != nil {
			return "", fmt.Errorf("read funnel: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("read funnel: %w", err)
	}
	if packed == nil {
		return "", nil
	}
	return *packed, nil
}

// unpackFunnelRow takes the first row off a text of readFunnelChunk: its
// event type, user and time, and the rest of the text.
func unpackFunnelRow(s string, distinct []any) (t, u, tm, rest string, ok bool) {
	if s == "" || s[0] < '0' || int(s[0]-'0') >= len(distinct) {
		return "", "", "", "", false
	}
	t, _ = distinct[s[0]-'0'].(string)
	if u, s, ok = unpackField(s[1:]); !ok {
		return "", "", "", "", false
	}
	if tm, s, ok = unpackField(s); !ok {
		return "", "", "", "", false
	}
	return t, u, tm, s, true
}

// unpackField takes a length in bytes, a space and that many bytes off s.
func unpackField(s string) (field, rest string, ok bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9' && i < 10:
			n = n*10 + int(c-'0')
		case c == ' ' && i > 0 && len(s)-i-1 >= n:
			return s[i+1 : i+1+n], s[i+1+n:], true
		default:
			return "", "", false
		}
	}
	return "", "", false
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
