package query

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
)

// Limits of the recent events.
const (
	DefaultRecentLimit = 50
	MaxRecentLimit     = 1000
)

// RecentEvent is one row of the event table, newest first in Recent.
type RecentEvent struct {
	ID          int64           `json:"id"`
	EventType   string          `json:"event_type"`
	Application string          `json:"application"`
	Version     string          `json:"version"`
	Platform    string          `json:"platform"`
	UserID      string          `json:"user_id"`
	SessionID   string          `json:"session_id"`
	Value       json.RawMessage `json:"value"`
	Time        string          `json:"time"`
}

// ParseLimit reads the limit of recent events: 1 to MaxRecentLimit,
// DefaultRecentLimit when empty.
func ParseLimit(v string) (int, error) {
	if v == "" {
		return DefaultRecentLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxRecentLimit {
		return 0, &ParamError{"limit", fmt.Sprintf("must be a whole number from 1 to %d", MaxRecentLimit)}
	}
	return n, nil
}

// Recent returns the newest limit events, of one application if application
// is not empty. A stored value that is not JSON is answered as a JSON string.
func Recent(ctx context.Context, q Querier, application string, limit int) ([]RecentEvent, error) {
	where, args := "", []any{}
	if application != "" {
		where, args = "WHERE application = ?", append(args, application)
	}
	d, order := dialectOf(q), "id DESC"
	if d == Postgres {
		// No index on id there (and ids of several nodes interleave): the
		// newest by time, through the (application, time) index.
		order = "time DESC, id DESC"
	}
	rows, err := q.QueryContext(ctx, d.bind(`SELECT id, event_type, application, version, platform, user_id, session_id, `+d.value()+`, `+d.text("time")+`
FROM event `+where+` ORDER BY `+order+` LIMIT ?`), append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("query recent events: %w", err)
	}
	defer rows.Close()
	out := []RecentEvent{}
	for rows.Next() {
		var e RecentEvent
		var v string
		if err := rows.Scan(&e.ID, &e.EventType, &e.Application, &e.Version, &e.Platform, &e.UserID, &e.SessionID, &v, &e.Time); err != nil {
			return nil, fmt.Errorf("read recent events: %w", err)
		}
		if d == Postgres && compactJSON(&e.Value, []byte(v)) {
			// jsonb's text, without its spaces.
		} else if json.Valid([]byte(v)) {
			e.Value = json.RawMessage(v)
		} else {
			e.Value, _ = json.Marshal(v)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read recent events: %w", err)
	}
	return out, nil
}

// Application is one application of the database with the days of its
// first and last stored events and its number of events.
type Application struct {
	Application string `json:"application"`
	FirstDay    string `json:"first_day"`
	LastDay     string `json:"last_day"`
	Events      int64  `json:"events"`
}

// Applications lists the applications, most events first. From the summary
// tables when they are kept: each application's events and its first and
// last day with events. Else the counts come from the application index
// alone; the first and last days are those of each application's first and
// last stored rows (lowest and highest id, found through the same index),
// which is the time order for rows this server wrote.
func Applications(ctx context.Context, q Querier) ([]Application, error) {
	query := `SELECT application, n,
  (SELECT substr(time, 1, 10) FROM event WHERE id = lo), (SELECT substr(time, 1, 10) FROM event WHERE id = hi)
FROM (SELECT application, COUNT(*) AS n, MIN(id) AS lo, MAX(id) AS hi FROM event GROUP BY application)
ORDER BY n DESC, application`
	if summariesReady(ctx, q) {
		// The days of stats_day that still have events, and the tail
		// (summary.go): the first and last days with events.
		query = `SELECT application, sum(n), min(lo), max(hi) FROM (
SELECT application, events AS n, day AS lo, day AS hi FROM stats_day WHERE events > 0
UNION ALL
SELECT application, count(*), substr(min(time), 1, 10), substr(max(time), 1, 10) FROM event NOT INDEXED WHERE id > ` + watermark + ` GROUP BY application)
GROUP BY application ORDER BY 2 DESC, application`
	}
	if dialectOf(q) == Postgres {
		// PostgreSQL has no index on id: the first and last days are those
		// of the earliest and latest times (the same for rows a server
		// wrote), through the (application, time) index; names sort by
		// their bytes, as SQLite's do.
		query = `SELECT application, COUNT(*) AS n, to_char(MIN(time), 'YYYY-MM-DD'), to_char(MAX(time), 'YYYY-MM-DD')
FROM event GROUP BY application ORDER BY n DESC, application COLLATE "C"`
	}
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("query applications: %w", err)
	}
	defer rows.Close()
	out := []Application{}
	for rows.Next() {
		var a Application
		if err := rows.Scan(&a.Application, &a.Events, &a.FirstDay, &a.LastDay); err != nil {
			return nil, fmt.Errorf("read applications: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read applications: %w", err)
	}
	return out, nil
}

// compactJSON sets *dst to the JSON text b without insignificant spaces
// and reports whether b was JSON.
func compactJSON(dst *json.RawMessage, b []byte) bool {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return false
	}
	*dst = buf.Bytes()
	return true
}
