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
		where, args = f.boundedWhere(lo, hi, true)
	}
	distinct := map[string]bool{}
	var in []string
	for _, s := range steps {
		if !distinct[s] {
			distinct[s] = true
			in = append(in, "?")
			args = append(args, s)
		}
	}
	d := dialectOf(q)
	rows, err := q.QueryContext(ctx, d.bind(`SELECT user_id, event_type, `+d.text("time")+` FROM event WHERE `+where+
		` AND event_type IN (`+strings.Join(in, ",")+`) ORDER BY user_id, time, id`), args...)
	if err != nil {
		return nil, fmt.Errorf("query funnel: %w", err)
	}
	defer rows.Close()
	reached := make([]int64, len(steps))
	var (
		user  string
		group []string // event types of the user's rows at the time at
		at    string
		k     int // steps the user has done
	)
	// advance applies a group of rows of one time: each row can complete
	// one step, in any order among themselves.
	advance := func() {
		used := make([]bool, len(group))
		for progress := true; progress && k < len(steps); {
			progress = false
			for i, t := range group {
				if !used[i] && k < len(steps) && t == steps[k] {
					used[i], progress = true, true
					reached[k]++
					k++
				}
			}
		}
		group = group[:0]
	}
	first := true
	for rows.Next() {
		var u, t, tm string
		if err := rows.Scan(&u, &t, &tm); err != nil {
			return nil, fmt.Errorf("read funnel: %w", err)
		}
		if first || u != user {
			advance()
			user, at, k, first = u, tm, 0, false
		} else if tm != at {
			advance()
			at = tm
		}
		group = append(group, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read funnel: %w", err)
	}
	advance()
	out := make([]FunnelStep, len(steps))
	for i, s := range steps {
		out[i] = FunnelStep{s, reached[i]}
	}
	return out, nil
}
