package query

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Source is the read side as the stats API, the dashboard and export see
// it: every figure and the export stream, from one database. A Reader is
// one, over SQLite (Open) or over PostgreSQL (NewReader with Postgres, as
// shard/pgquery opens it); an implementation that answers some figures
// another way (summary tables) must give the same JSON as the Reader over
// the same rows.
type Source interface {
	Stats(ctx context.Context, f Filter, today time.Time, series ...string) (*Stats, error)
	Funnel(ctx context.Context, f Filter, steps []string) ([]FunnelStep, error)
	Value(ctx context.Context, f Filter, field string) ([]ValueDay, error)
	Series(ctx context.Context, f Filter, by string) (*Series, error)
	Recent(ctx context.Context, application string, limit int) ([]RecentEvent, error)
	Applications(ctx context.Context) ([]Application, error)
	// NewExport returns a stream of the rows f selects, in id order.
	NewExport(f ExportFilter, format Format) ExportStream
	Close() error
}

// ExportStream hands out an export chunk by chunk (see ExportCursor).
type ExportStream interface {
	// Next returns the next chunk's bytes, valid until the next call;
	// io.EOF after the last.
	Next(ctx context.Context) ([]byte, error)
	// Result is what the stream has handed out so far.
	Result() ExportResult
}

var _ Source = (*Reader)(nil)

// Dialect is the SQL of the database a Reader reads.
type Dialect int

// The dialects.
const (
	// SQLite: the node's own database (the time column is text).
	SQLite Dialect = iota
	// Postgres: the event table the forwarder fills (shard/forward): time
	// is a timestamp, value jsonb (value_text when jsonb could not hold
	// the stored text), id a sequence across every node.
	Postgres
)

// NewReader is a Reader over db, a pool already opened on a database of
// dialect d (shard/pgquery opens PostgreSQL's). Options.MaxReaders bounds
// db's open connections; db is closed by Close.
func NewReader(db *sql.DB, d Dialect, o Options) *Reader {
	if o.MaxReaders <= 0 {
		o.MaxReaders = DefaultMaxReaders
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	db.SetMaxOpenConns(o.MaxReaders)
	db.SetMaxIdleConns(o.MaxReaders)
	// Idle connections let go of their page cache after a while.
	db.SetConnMaxIdleTime(time.Minute)
	r := &Reader{db: db, timeout: o.Timeout, loc: time.UTC, events: "event", dialect: d, unreachable: o.Unreachable, askValue: o.AskValue}
	if o.LocalTime {
		r.loc = time.Local
	}
	return r
}

// Stats is ComputeStats over r.
func (r *Reader) Stats(ctx context.Context, f Filter, today time.Time, series ...string) (*Stats, error) {
	return ComputeStats(ctx, r, f, today, series...)
}

// Funnel is ComputeFunnel over r.
func (r *Reader) Funnel(ctx context.Context, f Filter, steps []string) ([]FunnelStep, error) {
	return ComputeFunnel(ctx, r, f, steps)
}

// Value is ComputeValue over r.
// It tells Options.AskValue that field was asked for (the writer registers
// it, so that its summary is built: shard's valuefield.go).
func (r *Reader) Value(ctx context.Context, f Filter, field string) ([]ValueDay, error) {
	days, err := ComputeValue(ctx, r, f, field)
	if err == nil && r.askValue != nil && r.dialect == SQLite {
		if path, err := jsonPath(field); err == nil {
			r.askValue(f.Application, f.EventType, field, path)
		}
	}
	return days, err
}

// Series is ComputeSeries over r.
func (r *Reader) Series(ctx context.Context, f Filter, by string) (*Series, error) {
	return ComputeSeries(ctx, r, f, by)
}

// Recent is the package's Recent over r.
func (r *Reader) Recent(ctx context.Context, application string, limit int) ([]RecentEvent, error) {
	return Recent(ctx, r, application, limit)
}

// Applications is the package's Applications over r.
func (r *Reader) Applications(ctx context.Context) ([]Application, error) {
	return Applications(ctx, r)
}

// dialectOf is the dialect of a Querier: a Reader says; anything else
// (a *sql.DB opened on a SQLite file) is SQLite.
func dialectOf(q Querier) Dialect {
	if r, ok := q.(*Reader); ok {
		return r.dialect
	}
	return SQLite
}

// The SQL that differs between the dialects. PostgreSQL's time is a
// timestamp: a day is its date written as text, and a time is written as
// the SQLite column stores it ("2006-01-02 15:04:05.000000"), so that the
// Go code after the query sees the same text from both.

// day is the day (YYYY-MM-DD) of the time expression expr.
func (d Dialect) day(expr string) string {
	if d == Postgres {
		return "to_char(" + expr + ", 'YYYY-MM-DD')"
	}
	return "substr(" + expr + ", 1, 10)"
}

// text is the time expression expr as text.
func (d Dialect) text(expr string) string {
	if d == Postgres {
		return "to_char(" + expr + ", 'YYYY-MM-DD HH24:MI:SS.US')"
	}
	return expr + " || ''"
}

// value is the value column as the stored text: in PostgreSQL the text
// the node stored when jsonb could not hold it, else jsonb's text
// (normalised key order and spacing; see shard/forward/DESIGN.md).
func (d Dialect) value() string {
	if d == Postgres {
		return "coalesce(value_text, value::text)"
	}
	return "value"
}

// bind rewrites the parameters of a query written for SQLite ("?" and
// "?N") as PostgreSQL's ("$N"). The queries hold no "?" in a literal.
func (d Dialect) bind(q string) string {
	if d != Postgres {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] != '?' {
			b.WriteByte(q[i])
			continue
		}
		j := i + 1
		for j < len(q) && q[j] >= '0' && q[j] <= '9' {
			j++
		}
		if j > i+1 {
			b.WriteString("$" + q[i+1:j])
		} else {
			n++
			fmt.Fprintf(&b, "$%d", n)
		}
		i = j - 1
	}
	return b.String()
}
