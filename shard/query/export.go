package query

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/gocolytics/gocolytics/shard"
)

// TimeFormat is how the time column is written (shard.TimeFormat), and so
// how time filters are compared with it: as text, which sorts as time.
const TimeFormat = "2006-01-02 15:04:05.000000"

// exportChunkRows is how many rows one read transaction of an export takes.
// A long export reads in many short transactions, so it never holds a
// snapshot for long: the writer's checkpoints keep resetting the WAL
// meanwhile, and retention or erasure deletes are never kept waiting.
const exportChunkRows = 2000

// Columns are the event table's columns in the order an export writes them.
var Columns = []string{"id", "event_type", "application", "version", "platform", "user_id", "session_id", "value", "time"}

// Format is an export's format.
type Format int

// The export formats.
const (
	// NDJSON is one JSON object a line, value as the object itself.
	NDJSON Format = iota
	// CSV is RFC 4180 with a header line; every text column is quoted,
	// value is its JSON text in one column.
	CSV
)

// ParseFormat reads "ndjson" or "csv"; empty means NDJSON.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "", "ndjson":
		return NDJSON, nil
	case "csv":
		return CSV, nil
	}
	return 0, errors.New("must be csv or ndjson")
}

// ContentType is the format's media type.
func (f Format) ContentType() string {
	if f == CSV {
		return "text/csv; charset=utf-8"
	}
	return "application/x-ndjson"
}

// Ext is the format's file extension.
func (f Format) Ext() string {
	if f == CSV {
		return "csv"
	}
	return "ndjson"
}

// ParseInstant reads a time filter: RFC 3339 ("2026-11-01T12:00:00Z",
// with any offset) or a day "2026-11-01" (its midnight, UTC).
func ParseInstant(s string) (time.Time, error) {
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New("must be a day as YYYY-MM-DD or a time as RFC 3339 (2026-11-01T12:00:00Z)")
}

// ExportFilter selects the rows of an export.
type ExportFilter struct {
	Application string
	EventType   string
	// Since (inclusive) and Until (exclusive) bound the time column; the
	// zero time leaves that end open.
	Since, Until time.Time
	// AfterID keeps only rows whose id is larger.
	AfterID int64
	// Limit is the most rows written; 0 means all.
	Limit int64
}

// ExportResult is what an export wrote.
type ExportResult struct {
	Rows int64
	// LastID is the id of the last row written (AfterID when none was):
	// the after_id that continues the export.
	LastID int64
}

// Export writes the rows f selects to w in id order, in format (see
// ExportCursor); ctx bounds the whole export. Before each chunk it calls
// tick, if not nil.
func (r *Reader) Export(ctx context.Context, f ExportFilter, format Format, w io.Writer, tick func()) (ExportResult, error) {
	c := r.newExport(f, format)
	for {
		if tick != nil {
			tick()
		}
		b, err := c.Next(ctx)
		if errors.Is(err, io.EOF) {
			return c.Result(), nil
		}
		if err != nil {
			return c.Result(), err
		}
		if _, err := w.Write(b); err != nil {
			return c.Result(), err
		}
	}
}

// ExportCursor reads an export chunk by chunk (at most 2000 rows or about
// 1 MiB each), each chunk its own short read transaction under the
// Reader's time limit, so memory stays constant whatever the number of
// rows, and a slow client never holds a snapshot open: the chunk is
// handed out only once its transaction has ended.
type ExportCursor struct {
	r      *Reader
	f      ExportFilter
	q      string
	args   []any
	enc    encoder
	res    ExportResult
	header bool
	done   bool
}

// NewExport returns a cursor over the rows f selects, in id order.
func (r *Reader) NewExport(f ExportFilter, format Format) ExportStream {
	return r.newExport(f, format)
}

func (r *Reader) newExport(f ExportFilter, format Format) *ExportCursor {
	q, args := exportSQL(r.dialect, r.events, f, r.loc)
	return &ExportCursor{r: r, f: f, q: q, args: args, enc: encoder{format: format}, res: ExportResult{LastID: f.AfterID}}
}

// Next returns the next chunk's bytes, valid until the next call; io.EOF
// after the last. A CSV export's first chunk starts with the header line.
func (c *ExportCursor) Next(ctx context.Context) ([]byte, error) {
	c.enc.buf = c.enc.buf[:0]
	if !c.header && c.enc.format == CSV {
		c.enc.buf = append(c.enc.buf, strings.Join(Columns, ",")...)
		c.enc.buf = append(c.enc.buf, '\r', '\n')
	}
	c.header = true
	n := int64(exportChunkRows)
	if c.f.Limit > 0 {
		n = min(n, c.f.Limit-c.res.Rows)
	}
	if c.done || n <= 0 {
		c.done = true
		if len(c.enc.buf) > 0 {
			return c.enc.buf, nil
		}
		return nil, io.EOF
	}
	c.args[0], c.args[len(c.args)-1] = c.res.LastID, n
	more, err := c.r.exportChunk(ctx, c.q, c.args, &c.enc, &c.res)
	if err != nil {
		c.done = true
		return nil, err
	}
	c.done = !more
	if len(c.enc.buf) == 0 {
		return nil, io.EOF
	}
	return c.enc.buf, nil
}

// Result is what the cursor has handed out so far.
func (c *ExportCursor) Result() ExportResult { return c.res }

// exportChunkBytes ends a chunk early once its encoded rows reach it, so
// memory stays bounded even for rows with large values.
const exportChunkBytes = 1 << 20

// exportChunk reads one chunk into enc's buffer and says whether there may
// be more rows after it.
func (r *Reader) exportChunk(ctx context.Context, q string, args []any, enc *encoder, res *ExportResult) (bool, error) {
	cctx, cancel := r.Limit(ctx)
	defer cancel()
	rows, err := r.db.QueryContext(cctx, q, args...)
	if err != nil {
		return false, r.err(cctx, fmt.Errorf("export: %w", err))
	}
	defer rows.Close()
	var row Row
	dest := []any{&row.ID, &row.cols[0], &row.cols[1], &row.cols[2], &row.cols[3], &row.cols[4], &row.cols[5], &row.cols[6], &row.cols[7]}
	var got int64
	var compact bytes.Buffer
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return false, fmt.Errorf("export: %w", err)
		}
		if r.dialect == Postgres {
			// jsonb's text, without its spaces.
			compact.Reset()
			if json.Compact(&compact, row.cols[valueCol]) == nil {
				row.cols[valueCol] = compact.Bytes()
			}
		}
		enc.row(&row)
		got++
		res.Rows++
		res.LastID = row.ID
		if len(enc.buf) >= exportChunkBytes {
			return true, nil
		}
	}
	if err := rows.Err(); err != nil {
		return false, Err(cctx, fmt.Errorf("export: %w", err))
	}
	return got == args[len(args)-1].(int64), nil
}

// ringEvents is what Reader.events says for a database with the writer's
// staging ring: exports read event and the staged rows of the ring, as
// event_all does, but in a form that reads the ring only for a chunk that
// can reach it (exportSQL).
const ringEvents = "event+ring"

// exportSQL builds the chunk query of f on table (or view) from: its first
// argument is the id to read after, its last the chunk's size. The time
// column is read as text (CAST), so it comes out exactly as stored.
//
// From ringEvents it is event_all's union written out, with a guard: the
// ring (a few MB of rows without an index on id, most of them stale copies
// of merged events) is scanned only when the chunk's last row from event,
// if it has one, is above the merged watermark, below which event has
// every event (the staged ones are all above it). Reading event_all
// instead scans the whole ring for every chunk, three times the time of a
// chunk of event alone.
func exportSQL(d Dialect, from string, f ExportFilter, loc *time.Location) (string, []any) {
	var cond strings.Builder
	args := []any{f.AfterID}
	add := func(c string, v any) {
		args = append(args, v)
		fmt.Fprintf(&cond, " AND %s ?%d", c, len(args))
	}
	if f.Application != "" {
		add("application =", f.Application)
	}
	if f.EventType != "" {
		add("event_type =", f.EventType)
	}
	if !f.Since.IsZero() {
		add("time >=", f.Since.In(loc).Format(TimeFormat))
	}
	if !f.Until.IsZero() {
		add("time <", f.Until.In(loc).Format(TimeFormat))
	}
	limit := fmt.Sprintf("?%d", len(args)+1)
	args = append(args, int64(0))
	cols := "SELECT id, event_type, application, version, platform, user_id, session_id, " + d.value() + ", " + d.text("time")
	if from != ringEvents {
		return d.bind(cols + " FROM " + from + " WHERE id > ?1" + cond.String() + " ORDER BY id LIMIT " + limit), args
	}
	q := cols + " FROM event WHERE id > ?1" + cond.String() +
		" UNION ALL " + cols + " FROM (SELECT merged FROM " + shard.StagingMeta +
		" WHERE coalesce((SELECT id FROM event WHERE id > ?1" + cond.String() + " ORDER BY id LIMIT 1 OFFSET " + limit + " - 1), merged + 1) > merged) AS m" +
		" CROSS JOIN " + shard.StagingTable + " WHERE id > ?1 AND id > m.merged" + cond.String() +
		" ORDER BY id LIMIT " + limit
	return q, args
}

// Row is one exported row. Its text columns are raw bytes valid until the
// next row is read.
type Row struct {
	ID   int64
	cols [8]sql.RawBytes
}

// formatInt is strconv.AppendInt, named for the encoder.
func formatInt(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }
