package query

import (
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
	rows, err := q.QueryContext(ctx, `SELECT id, event_type, application, version, platform, user_id, session_id, value, time || ''
FROM event `+where+` ORDER BY id DESC LIMIT ?`, append(args, limit)...)
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
		if json.Valid([]byte(v)) {
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

// Applications lists the applications, most events first. The counts come
// from the application index alone; the first and last days are those of
// each application's first and last stored rows (lowest and highest id,
// found through the same index), which is the time order for rows this
// server wrote.
func Applications(ctx context.Context, q Querier) ([]Application, error) {
	rows, err := q.QueryContext(ctx, `SELECT application, n,
  (SELECT substr(time, 1, 10) FROM event WHERE id = lo), (SELECT substr(time, 1, 10) FROM event WHERE id = hi)
FROM (SELECT application, COUNT(*) AS n, MIN(id) AS lo, MAX(id) AS hi FROM event GROUP BY application)
ORDER BY n DESC, application`)
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
