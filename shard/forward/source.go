package forward

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // the SQLite driver, read-only here
)

// source reads committed rows of the node's SQLite database through a
// read-only connection of its own, so it never writes and never holds up
// the writer (WAL lets it read beside it).
type source struct {
	db *sql.DB
}

func openSource(path string) (*source, error) {
	q := url.Values{}
	q.Set("mode", "ro")
	q.Set("_busy_timeout", "5000")
	p := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	db, err := sql.Open("sqlite3", "file:"+p+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %q read-only: %w", path, err)
	}
	db.SetMaxOpenConns(2) // the read-ahead, and the lag and id checks beside it
	return &source{db: db}, nil
}

func (s *source) Close() error {
	if s == nil || s.db == nil {
		return nil
	}
	return s.db.Close()
}

// readSQL reads rows as stored, as text (CAST: the driver would parse a
// DATETIME column itself); a NULL value is read as JSON null.
const readSQL = `SELECT id, event_type, application, version, platform, user_id, session_id,
	coalesce(CAST(value AS TEXT), 'null'), CAST(time AS TEXT) FROM event WHERE id > ? ORDER BY id LIMIT ?`

// read appends to b (reset first) up to limit rows with an id above after,
// in id order, from one snapshot. The writer is the only one that inserts
// and ids grow with each commit, so every row a later snapshot shows has a
// larger id than the largest one this snapshot shows (DESIGN.md: ids and
// snapshots). The columns are scanned as raw bytes straight into the
// batch's COPY buffer, with no string per column on the Go side.
func (s *source) read(ctx context.Context, after int64, limit int, b *batch) error {
	b.reset()
	rows, err := s.db.QueryContext(ctx, readSQL, after, limit)
	if err != nil {
		return fmt.Errorf("read rows after id %d: %w", after, err)
	}
	defer rows.Close()
	var id int64
	var cols [8][]byte
	raw := make([]sql.RawBytes, len(cols))
	dest := []any{&id, &raw[0], &raw[1], &raw[2], &raw[3], &raw[4], &raw[5], &raw[6], &raw[7]}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("read rows after id %d: %w", after, err)
		}
		for i := range raw {
			cols[i] = raw[i]
		}
		b.add(id, &cols)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read rows after id %d: %w", after, err)
	}
	b.finish()
	return nil
}

// lag returns the largest id and the time of the first row after the given
// id (zero when there is none).
func (s *source) lag(ctx context.Context, after int64) (maxID int64, oldest time.Time, err error) {
	var m sql.NullInt64
	if err := s.db.QueryRowContext(ctx, "SELECT max(id) FROM event").Scan(&m); err != nil {
		return 0, time.Time{}, fmt.Errorf("read the largest id: %w", err)
	}
	if m.Int64 <= after {
		return m.Int64, time.Time{}, nil
	}
	var tm sql.NullString
	err = s.db.QueryRowContext(ctx, "SELECT CAST(time AS TEXT) FROM event WHERE id > ? ORDER BY id LIMIT 1", after).Scan(&tm)
	if errors.Is(err, sql.ErrNoRows) {
		return m.Int64, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("read the oldest unforwarded row: %w", err)
	}
	t, _ := parseTime(tm.String)
	return m.Int64, t, nil
}

// timeAt returns the time column of the row with the given id, and false
// when there is no such row.
func (s *source) timeAt(ctx context.Context, id int64) (time.Time, bool, error) {
	var tm sql.NullString
	err := s.db.QueryRowContext(ctx, "SELECT CAST(time AS TEXT) FROM event WHERE id = ?", id).Scan(&tm)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	t, _ := parseTime(tm.String)
	return t, true, nil
}

// timeLayouts are the forms of the time column: gocolytics' and
// SQLAlchemy's (with microseconds, or without when they were zero), and
// ISO 8601 with a T.
var timeLayouts = []string{
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999Z07:00",
	"2006-01-02",
}

// parseTime reads the time column as a wall-clock time (PostgreSQL's
// timestamp keeps the same wall clock, UTC or LOCAL_TIME alike). A time it
// cannot read becomes 1970-01-01 00:00:00 and ok is false.
func parseTime(s string) (t time.Time, ok bool) {
	s = strings.TrimSpace(s)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			if _, off := t.Zone(); off != 0 {
				t = t.UTC()
			}
			return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC), true
		}
	}
	return time.Unix(0, 0).UTC(), false
}

// storedTimeFormat is how the writer stores time (shard.TimeFormat).
const storedTimeFormat = "2006-01-02 15:04:05.000000"

// rewind finds ids given again: SQLite gives a new row max(id)+1, so once
// the newest rows are deleted (an erasure, retention), new rows take ids
// the forwarder has passed already. That has happened when the largest id
// is below pos, or the row at pos is not the one forwarded (its time is
// not lastTime). Rows written after the forwarded ones are newer than
// lastTime, so the position to go back to is just before the first of
// those at or below pos. It returns pos itself when nothing was reused.
func (s *source) rewind(ctx context.Context, pos int64, lastTime time.Time) (int64, error) {
	var maxID sql.NullInt64
	if err := s.db.QueryRowContext(ctx, "SELECT max(id) FROM event").Scan(&maxID); err != nil {
		return pos, fmt.Errorf("read the largest id: %w", err)
	}
	if maxID.Int64 >= pos {
		t, ok, err := s.timeAt(ctx, pos)
		if err != nil || !ok || t.Truncate(time.Microsecond).Equal(lastTime) {
			return pos, err
		}
	}
	var first sql.NullInt64
	err := s.db.QueryRowContext(ctx, "SELECT min(id) FROM event WHERE id <= ? AND time > ?", pos, lastTime.Format(storedTimeFormat)).Scan(&first)
	if err != nil {
		return pos, fmt.Errorf("look for reused ids: %w", err)
	}
	if first.Valid {
		return first.Int64 - 1, nil
	}
	return min(maxID.Int64, pos), nil
}
