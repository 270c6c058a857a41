package query

import (
	"context"
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
	if lo, hi, ok, err := idRange(ctx, q, f); err != nil {
		return nil, err
	} else if ok {
		out, inOrder, err := streamFunnel(ctx, q, f, steps, lo, hi)
		if err != nil || inOrder {
			return out, err
		}
		where, args = f.boundedWhere(lo, hi, true)
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

// streamFunnel is ComputeFunnel over the rows with ids lo to hi read in id
// order, without SQLite's sort by user and time (most of the funnel's
// cost): rows a server wrote come in time order, so each user's rows come
// in the order the funnel walks them. inOrder is false, and the answer
// nil, as soon as a user's row comes with a time before the one before it
// (an imported database): the caller then sorts.
func streamFunnel(ctx context.Context, q Querier, f Filter, steps []string, lo, hi int64) (out []FunnelStep, inOrder bool, err error) {
	where, args := f.boundedWhere(lo, hi, false)
	in, args := stepList(steps, args)
	rows, err := q.QueryContext(ctx, `SELECT user_id, event_type, time || '' FROM event WHERE `+where+
		` AND +event_type IN (`+strings.Join(in, ",")+`) ORDER BY id`, args...)
	if err != nil {
		return nil, false, fmt.Errorf("query funnel: %w", err)
	}
	defer rows.Close()
	reached := make([]int64, len(steps))
	users := map[string]*funnelUser{}
	var u, t, tm string
	for rows.Next() {
		if err := rows.Scan(&u, &t, &tm); err != nil {
			return nil, false, fmt.Errorf("read funnel: %w", err)
		}
		fu := users[u]
		switch {
		case fu == nil:
			fu = &funnelUser{at: tm}
			users[u] = fu
		case tm < fu.at:
			return nil, false, nil
		case tm > fu.at:
			fu.advance(steps, reached)
			fu.at = tm
		}
		if fu.k < len(steps) {
			fu.group = append(fu.group, t)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("read funnel: %w", err)
	}
	for _, fu := range users {
		fu.advance(steps, reached)
	}
	return funnelSteps(steps, reached), true, nil
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
