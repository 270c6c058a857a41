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
	if out, ok, err := summaryFunnel(ctx, q, f, steps); err != nil || ok {
		return out, err
	}
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
			t, u, rest, ok, err := p.next(distinct)
			if err != nil || !ok {
				return err
			}
			// The row's time is p.day followed by rest.
			fu := users[u]
			switch {
			case fu == nil:
				fu = &funnelUser{at: joinTime(p.day, rest)}
				users[strings.Clone(u)] = fu
			default:
				switch compareJoined(p.day, rest, fu.at) {
				case -1:
					inOrder = false
					return errNotInOrder
				case 1:
					fu.advance(steps, reached)
					fu.at = joinTime(p.day, rest)
				}
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

// joinTime is a row's time from its piece's day and the rest, in a string
// of its own (a user's time must not hold on to the piece's text).
func joinTime(day, rest string) string {
	if day == "" {
		return strings.Clone(rest)
	}
	return day + rest
}

// compareJoined compares a1+a2 with b without joining them.
func compareJoined(a1, a2, b string) int {
	if len(a1) > len(b) {
		if c := strings.Compare(a1[:len(b)], b); c != 0 {
			return c
		}
		return 1 // b is a proper prefix of a1 + a2
	}
	if c := strings.Compare(a1, b[:len(a1)]); c != 0 {
		return c
	}
	return strings.Compare(a2, b[len(a1):])
}

// errNotInOrder stops streamFunnel's reading at a user's row out of time
// order.
var errNotInOrder = errors.New("funnel rows not in time order")

// funnelPiece is the rows of one chunk whose event type is one of the
// funnel's steps (each once: distinct), in one text, in one of two forms:
//
//   - separated (the common one): rows separated by the byte 0x1E, each the
//     index of its event type in distinct as one digit, the user, the byte
//     0x1F and its time after day (a day chunk's times all start with its
//     day, which SQLite then need not copy: the tail's day is "");
//   - lengths, when a user or a time holds one of those two bytes (the
//     separated text then does not split into n rows of one 0x1F each): for
//     each row the digit, then the user and the whole time, each as its
//     length in bytes, a space and its bytes.
//
// The separated form saves SQLite two number-to-text conversions and a
// quarter of the bytes a row.
type funnelPiece struct {
	packed  string
	day     string // what precedes each time of packed
	lengths bool
}

// next takes the first row off p: its event type (from distinct), user and
// time after p.day. ok is false at the end.
func (p *funnelPiece) next(distinct []any) (t, u, rest string, ok bool, err error) {
	if p.packed == "" {
		return "", "", "", false, nil
	}
	if p.lengths {
		if t, u, rest, p.packed, ok = unpackFunnelRow(p.packed, distinct); !ok {
			return "", "", "", false, errUnpack
		}
		return t, u, rest, true, nil
	}
	row := p.packed
	if i := strings.IndexByte(row, rowSep); i >= 0 {
		row, p.packed = row[:i], row[i+1:]
	} else {
		p.packed = ""
	}
	j := strings.IndexByte(row, fieldSep)
	if j < 1 || row[0] < '0' || int(row[0]-'0') >= len(distinct) {
		return "", "", "", false, errUnpack
	}
	t, _ = distinct[row[0]-'0'].(string)
	return t, row[1:j], row[j+1:], true, nil
}

// The separators of a funnelPiece's separated form.
const (
	rowSep   = 0x1e
	fieldSep = 0x1f
)

// errUnpack is a piece whose text does not unpack.
var errUnpack = errors.New("read funnel: a row does not unpack")

// readFunnelChunk reads the rows of c whose event type is one of distinct
// (the funnel's steps, each once) as a funnelPiece: in the separated form,
// checked to split into as many rows as SQLite counted, each with one field
// separator, else again in the lengths form.
func readFunnelChunk(ctx context.Context, q Querier, f Filter, distinct []any, c chunk) (funnelPiece, error) {
	cf := c.filter(f)
	cf.EventType = ""
	where, args := cf.boundedWhere(c.lo, c.hi, false)
	code, in := stepCode(len(distinct), 1)
	p := funnelPiece{}
	tm := "time"
	if !c.tail {
		// Every time of a day chunk starts with its day: its filter takes
		// times from the day's text to the next day's, and only texts
		// compare between two texts.
		p.day = c.day.Format(DayFormat)
		tm = fmt.Sprintf("substr(time, %d)", len(p.day)+1)
	}
	from := `FROM event WHERE ` + renumber(where, len(distinct)+1) + ` AND +event_type IN (` + in + `)`
	args = append(distinct[:len(distinct):len(distinct)], args...)
	var n int64
	var packed *string
	err := scanOne(ctx, q, []any{&n, &packed}, `SELECT count(*), group_concat(`+code+` || user_id || char(31) || `+tm+`, char(30)) `+from, args...)
	if err != nil || packed == nil {
		return p, err
	}
	p.packed = *packed
	if int64(strings.Count(p.packed, "\x1e"))+1 == n && int64(strings.Count(p.packed, "\x1f")) == n {
		return p, nil
	}
	// A user or a time holds a separator.
	p = funnelPiece{lengths: true}
	err = scanOne(ctx, q, []any{&packed}, `SELECT group_concat(`+code+` || octet_length(user_id) || ' ' || user_id || octet_length(time) || ' ' || time, '') `+from, args...)
	if err != nil || packed == nil {
		return p, err
	}
	p.packed = *packed
	return p, nil
}

// scanOne reads the one row of an aggregate query into dest.
func scanOne(ctx context.Context, q Querier, dest []any, query string, args ...any) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("query funnel: %w", err)
	}
	defer rows.Close()
	if rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("read funnel: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read funnel: %w", err)
	}
	return nil
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
