// Package query owns the read side: a pool of read-only connections on the
// database file, bounded in number and in time per query (Reader), and all
// the SQL that reads through it: exports (export.go) and the statistics of
// the stats API and the dashboard (params.go and beside it). Nothing in it
// writes: every write goes through shard's one writer.
package query

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/mattn/go-sqlite3"
)

// Defaults of a Reader.
const (
	// DefaultMaxReaders is how many queries run at once; more wait for a
	// free connection (up to their time limit). A few are enough on a
	// small machine, and they keep the writer's CPU share.
	DefaultMaxReaders = 4
	// DefaultTimeout is a query's time limit from Limit.
	DefaultTimeout = 10 * time.Second
	// DefaultBusyTimeout is how long a read waits for a lock (a reader
	// only ever waits during WAL recovery or a TRUNCATE checkpoint).
	DefaultBusyTimeout = 5 * time.Second
)

// Sentinel errors.
var (
	// ErrTimeout is a query that ran past its time limit, or waited past it
	// for a free connection; the HTTP layer answers 503.
	ErrTimeout = errors.New("query took longer than its time limit")
	// ErrNoDatabase is a database file that does not exist or is not a
	// gocolytics (or Pycolytics) database.
	ErrNoDatabase = errors.New("no event database")
	// ErrUnavailable is a database server that cannot be reached
	// (PostgreSQL down or refusing); the HTTP layer answers 503.
	ErrUnavailable = errors.New("the database cannot be reached")
)

// Options configure a Reader; the zero value of each field is its default.
type Options struct {
	MaxReaders  int
	Timeout     time.Duration
	BusyTimeout time.Duration
	// LocalTime says the time column is in the server's local time zone
	// (LOCAL_TIME), so time filters are written in it too.
	LocalTime bool
	// Unreachable, for a database server (NewReader), says whether an
	// error means the server cannot be reached: such errors are wrapped in
	// ErrUnavailable.
	Unreachable func(error) bool
	// AskValue, if set, is told of every value statistics request (its
	// application, event type, field and the field's JSON path): the
	// writer's shard.DB.AskValueField, which registers the field. It must
	// not block.
	AskValue func(application, eventType, field, path string)
}

// Reader is the read-only handle: a database/sql pool of at most MaxReaders
// connections opened with mode=ro and query_only, so nothing through it can
// write. In WAL mode its reads never block the writer, nor the writer them.
// It is safe for concurrent use.
type Reader struct {
	db      *sql.DB
	timeout time.Duration
	loc     *time.Location
	// events is what exports read: the writer's view of event and its
	// staging table (event_all) when the database has it, so that an export
	// holds every acknowledged event, the last second's too; event
	// otherwise.
	events string
	// dialect is the database's SQL (SQLite unless NewReader says).
	dialect Dialect
	// unreachable, if set, says whether an error means the server cannot
	// be reached (Options.Unreachable).
	unreachable func(error) bool
	// askValue is Options.AskValue.
	askValue func(application, eventType, field, path string)
}

// Open opens the pool on the database at path. It checks that the file is a
// database holding an event table, and creates nothing.
func Open(path string, o Options) (*Reader, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoDatabase, err)
	}
	r := NewReader(OpenDB(path, o), SQLite, o)
	db := r.db
	ctx, cancel := r.Limit(context.Background())
	defer cancel()
	var n int
	err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'event'").Scan(&n)
	if err == nil && n == 0 {
		err = errors.New("it has no event table")
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: %s: %v", ErrNoDatabase, path, err)
	}
	r.events = "event"
	if db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type = 'view' AND name = 'event_all'").Scan(&n) == nil && n == 1 {
		r.events = "event_all"
		if db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?", shard.StagingMeta).Scan(&n) == nil && n == 1 {
			r.events = ringEvents
		}
	}
	return r, nil
}

// OpenDB opens a database/sql handle on the database at path whose
// connections are a Reader's (mode=ro, query_only, o's busy timeout), with no bound on their number or time: Open's pool without
// its limits, for benchmarks and tests that read as the server reads. It
// checks nothing (Open does).
func OpenDB(path string, o Options) *sql.DB {
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = DefaultBusyTimeout
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Set("_query_only", "1")
	q.Set("_busy_timeout", fmt.Sprint(o.BusyTimeout.Milliseconds()))
	dsn := "file:" + strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path) + "?" + q.Encode()
	return sql.OpenDB(readConnector{dsn})
}

// readConnector opens connections straight from the driver, each its own
// SQLite connection with the pragmas of its DSN.
type readConnector struct{ dsn string }

func (c readConnector) Connect(context.Context) (driver.Conn, error) {
	return (&sqlite3.SQLiteDriver{}).Open(c.dsn)
}

func (c readConnector) Driver() driver.Driver { return &sqlite3.SQLiteDriver{} }

// Limit returns ctx limited to the Reader's time limit per query. Call its
// cancel when the query's rows are closed.
func (r *Reader) Limit(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

// QueryContext runs a query on one of the pool's connections, waiting for
// one while all are busy. It has the signature of sql.DB's, so functions
// that read can take any such handle; ctx bounds the wait and the query
// (see Limit).
func (r *Reader) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := r.db.QueryContext(ctx, query, args...)
	return rows, r.err(ctx, err)
}

// err is Err, and wraps an error that says the server cannot be reached in
// ErrUnavailable.
func (r *Reader) err(ctx context.Context, err error) error {
	err = Err(ctx, err)
	if err != nil && r.unreachable != nil && !errors.Is(err, ErrTimeout) && r.unreachable(err) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return err
}

// QueryRowContext is QueryContext for one row.
func (r *Reader) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return r.db.QueryRowContext(ctx, query, args...)
}

// Err is err, wrapped in ErrTimeout when ctx's deadline has passed: SQLite
// reports an interrupted query as an ordinary error.
func Err(ctx context.Context, err error) error {
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.Is(err, ErrTimeout) {
		return fmt.Errorf("%w: %v", ErrTimeout, err)
	}
	return err
}

// Location is the time zone of the time column.
func (r *Reader) Location() *time.Location { return r.loc }

// Close closes the pool. It is nil-safe.
func (r *Reader) Close() error {
	if r == nil {
		return nil
	}
	return r.db.Close()
}
