package shard

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
)

// Defaults for Options. Each differs from SQLite's own default where noted.
const (
	// DefaultBusyTimeout is how long a commit waits for another process
	// holding the database lock (SQLite's default is not to wait at all).
	DefaultBusyTimeout = 5 * time.Second
	// DefaultSynchronous is FULL, so that an acknowledged event survives a
	// power cut (SQLite's default in WAL mode is FULL as well, but many
	// servers lower it to NORMAL; we do not).
	DefaultSynchronous = "FULL"
	// DefaultCacheSizeKiB is the page cache of the writer connection
	// (SQLite's default is 2000 KiB), sized so that the five indexes of a
	// database of a few million rows stay in memory.
	DefaultCacheSizeKiB = 16384
	// DefaultCommitQuietWait is how long a request that wakes an idle
	// writer waits for others to share its commit (Options.CommitQuietWait).
	DefaultCommitQuietWait = 50 * time.Millisecond
	// DefaultMaxBatchEvents caps the events of one transaction.
	DefaultMaxBatchEvents = 20000
	// DefaultWALLimitBytes is the WAL size above which the writer runs a
	// TRUNCATE checkpoint between transactions, and the journal_size_limit.
	DefaultWALLimitBytes = 64 << 20
)

// schemaVersion is the PRAGMA user_version this code understands. Pycolytics
// never set it, so a Pycolytics database reads 0, and so does ours.
const schemaVersion = 0

// Sentinel errors.
var (
	ErrClosed         = errors.New("database is closed")
	ErrUnknownSchema  = errors.New("database has an unknown schema")
	ErrNotWAL         = errors.New("database did not switch to WAL journal mode")
	ErrBadSynchronous = errors.New("synchronous must be FULL, NORMAL or EXTRA")
	ErrNoAccess       = errors.New("database is not accessible")
	// ErrInDoubt is what a write through another process (shard/link)
	// returns when the writer went away after the events were handed to
	// it: they may have been committed, or not. DB.Write never returns it.
	ErrInDoubt = errors.New("outcome unknown: the writer went away with the events")
)

// Options configures a DB. The zero value of each field means its default.
type Options struct {
	BusyTimeout    time.Duration
	Synchronous    string
	CacheSizeKiB   int
	MaxBatchEvents int
	WALLimitBytes  int64
	// LocalTime writes the time column in the server's local time zone
	// instead of UTC, as an old Pycolytics database did.
	LocalTime bool
	// Shards is the number of queues that feed the writer; 0 means one per
	// CPU.
	Shards int
	// EraseEventType, when set, makes an event of this type delete every
	// earlier row of its user_id and application (ERASE_EVENT_TYPE) once
	// it is committed. Open resumes the deletions a previous run did not
	// finish (it stopped or crashed first): every newest such event of a
	// user and application that still has earlier rows.
	EraseEventType string
	// MergeInterval is how long an event stays in the staging table at most
	// under load (DESIGN.md, "Staging and merge"); negative turns staging
	// off, so that the group commit inserts into event directly.
	MergeInterval time.Duration
	// MergeQuietInterval is how long an event stays in the staging table
	// at most while fewer than 1,000 events are staged; 0 means 5 ×
	// MergeInterval. Longer writes fewer bytes per event in quiet stretches.
	MergeQuietInterval time.Duration
	// CommitQuietWait is how long a request that finds the writer idle
	// (no commit for at least as long) waits for others to share its
	// transaction; 0 means DefaultCommitQuietWait, negative never waits.
	// Longer writes fewer bytes per event in quiet stretches; a busy
	// server never waits (writer.go, pace).
	CommitQuietWait time.Duration
	// MergeRows merges as soon as this many events are staged.
	MergeRows int
	// MergeMaxRows caps the events one merge transaction moves.
	MergeMaxRows int
	// MergeBudget, when positive, is about how long one merge transaction
	// between group commits may take (requests wait for it); a due merge
	// that needs longer is done in several, a group commit between two.
	// Zero or negative (the default) leaves MergeMaxRows as the only
	// bound: smaller merges write more bytes an event (DESIGN.md, "Staging
	// and merge").
	MergeBudget time.Duration
	// PageSize is the page size of a new database file; 0 keeps SQLite's
	// (4096). An existing file keeps its own.
	PageSize int
	// WALAutocheckpoint is how many WAL frames not yet in the database
	// file make the checkpointer copy them (SQLITE_WAL_AUTOCHECKPOINT); 0
	// means DefaultCheckpointPages.
	WALAutocheckpoint int

	// SummaryInterval is how long a row of event waits at most before the
	// writer adds it to the summary tables (summary.go; the stats read it
	// raw meanwhile); 0 means DefaultSummaryInterval, negative keeps no
	// summaries (the stats read every row raw).
	SummaryInterval time.Duration
	// SummaryRows starts a summary pass as soon as this many rows wait,
	// and caps the rows summarised at Close; 0 means DefaultSummaryRows.
	SummaryRows int
	// FoldRows is the most pass rows a finished day may have to be folded
	// (summary.go, foldDone): a larger day keeps its passes' rows. 0 means
	// 2 × SummaryRows, so that a fold costs about a full pass; negative
	// folds every day whatever its size (benchmarks).
	FoldRows int
}

func (o Options) withDefaults() Options {
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = DefaultBusyTimeout
	}
	if o.Synchronous == "" {
		o.Synchronous = DefaultSynchronous
	}
	if o.CacheSizeKiB <= 0 {
		o.CacheSizeKiB = DefaultCacheSizeKiB
	}
	if o.MaxBatchEvents <= 0 {
		o.MaxBatchEvents = DefaultMaxBatchEvents
	}
	if o.WALLimitBytes <= 0 {
		o.WALLimitBytes = DefaultWALLimitBytes
	}
	if o.MergeInterval == 0 {
		o.MergeInterval = DefaultMergeInterval
	}
	if o.MergeQuietInterval <= 0 {
		o.MergeQuietInterval = mergeQuietFactor * o.MergeInterval
	}
	if o.CommitQuietWait == 0 {
		o.CommitQuietWait = DefaultCommitQuietWait
	}
	if o.WALAutocheckpoint <= 0 {
		o.WALAutocheckpoint = DefaultCheckpointPages
	}
	if o.MergeRows <= 0 {
		o.MergeRows = DefaultMergeRows
	}
	if o.MergeMaxRows <= 0 {
		o.MergeMaxRows = DefaultMergeMaxRows
	}
	if o.SummaryInterval == 0 {
		o.SummaryInterval = DefaultSummaryInterval
	}
	if o.SummaryRows <= 0 {
		o.SummaryRows = DefaultSummaryRows
	}
	if o.FoldRows == 0 {
		o.FoldRows = 2 * min(o.SummaryRows, math.MaxInt/2)
	}
	return o
}

const createSchema = `
CREATE TABLE IF NOT EXISTS event (
	event_type VARCHAR NOT NULL,
	application VARCHAR NOT NULL,
	version VARCHAR NOT NULL,
	platform VARCHAR NOT NULL,
	user_id VARCHAR NOT NULL,
	session_id VARCHAR NOT NULL,
	value JSON NOT NULL,
	id INTEGER NOT NULL,
	time DATETIME NOT NULL,
	PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS ix_event_event_type ON event (event_type);
CREATE INDEX IF NOT EXISTS ix_event_application ON event (application);
CREATE INDEX IF NOT EXISTS ix_event_version ON event (version);
CREATE INDEX IF NOT EXISTS ix_event_platform ON event (platform);
CREATE INDEX IF NOT EXISTS ix_event_user_id ON event (user_id);
`

// insertSQL names its columns, so that a Pycolytics database, whose column
// order differs, takes the same statement.
const insertSQL = `INSERT INTO event (event_type, application, version, platform, user_id, session_id, value, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`

// requiredColumns are the columns a database must have to be written to.
var requiredColumns = []string{"event_type", "application", "version", "platform", "user_id", "session_id", "value", "id", "time"}

// dsn builds the connection string. Pragmas go here, not into Exec calls, so
// that they hold for the connection from its first statement.
func dsn(path string, o Options) string {
	q := url.Values{}
	q.Set("_synchronous", o.Synchronous)
	q.Set("_busy_timeout", fmt.Sprint(o.BusyTimeout.Milliseconds()))
	q.Set("_txlock", "immediate")
	q.Set("_cache_size", fmt.Sprint(-o.CacheSizeKiB))
	return "file:" + escapePath(path) + "?" + q.Encode()
}

func escapePath(p string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(p)
}

// openConn opens the single write connection, checks the file is a database
// we can write to, creates the schema if it is missing and reads back the
// pragmas that matter. A new database file is created mode 0600 (the umask
// may narrow it further; SQLite gives the -wal and -shm files the mode of
// the database file), in folders created mode 0750. When opening fails,
// whatever it created (folders, the file, its -wal and -shm) is removed, so
// a failed start (a full disk, a bad setting) leaves the folder as it was.
// On success it returns what it created, in creation order, for
// DB.RemoveCreated.
func openConn(path string, o Options) (c *sqlite3.SQLiteConn, _ []string, err error) {
	var made []string // in creation order
	defer func() {
		if err != nil {
			removeCreated(made)
		}
	}()
	made, err = mkdirAll(filepath.Dir(path), 0o750)
	if err != nil {
		return nil, nil, fmt.Errorf("create database folder: %w", err)
	}
	if err := checkAccess(path); err != nil {
		return nil, nil, fmt.Errorf("open database %q: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		f.Close()
		made = append(made, path)
		for _, side := range []string{"-journal", "-wal", "-shm"} {
			if _, err := os.Lstat(path + side); errors.Is(err, os.ErrNotExist) {
				made = append(made, path+side)
			}
		}
	case !errors.Is(err, os.ErrExist):
		return nil, nil, fmt.Errorf("open database %q: %w", path, err)
	}
	registerSyncVFS()
	dc, err := (&sqlite3.SQLiteDriver{}).Open(dsn(path, o))
	if err != nil {
		return nil, nil, fmt.Errorf("open database %q: %w", path, err)
	}
	c = dc.(*sqlite3.SQLiteConn)
	if err := prepareSchema(c, o); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("open database %q: %w", path, err)
	}
	return c, made, nil
}

// removeCreated removes paths, the last first; folders only if empty.
func removeCreated(paths []string) {
	for i := len(paths) - 1; i >= 0; i-- {
		os.Remove(paths[i])
	}
}

// mkdirAll is os.MkdirAll that returns the folders it created, outermost
// first.
func mkdirAll(dir string, perm os.FileMode) ([]string, error) {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		missing = append(missing, d)
	}
	if err := os.MkdirAll(dir, perm); err != nil {
		return nil, err
	}
	slices.Reverse(missing)
	return missing, nil
}

func prepareSchema(c *sqlite3.SQLiteConn, o Options) error {
	// Reading the schema first makes a file that is not a database fail
	// here, before anything is written to it.
	v, err := queryInt(c, "PRAGMA user_version")
	if err != nil {
		return err
	}
	if v != schemaVersion {
		return fmt.Errorf("%w: user_version %d (this build knows %d)", ErrUnknownSchema, v, schemaVersion)
	}
	cols, err := queryStrings(c, "SELECT name FROM pragma_table_info('event')")
	if err != nil {
		return err
	}
	if len(cols) > 0 {
		have := map[string]bool{}
		for _, c := range cols {
			have[c] = true
		}
		for _, r := range requiredColumns {
			if !have[r] {
				return fmt.Errorf("%w: table event has no column %q", ErrUnknownSchema, r)
			}
		}
	}
	// page_size only takes on a file that has no pages yet, and must come
	// before journal_mode=WAL.
	if o.PageSize > 0 && len(cols) == 0 {
		if _, err := c.Exec(fmt.Sprintf("PRAGMA page_size = %d", o.PageSize), nil); err != nil {
			return err
		}
	}
	// journal_mode is set here, after the checks, rather than in the DSN,
	// so that a file we refuse is left exactly as it was.
	mode, err := queryStrings(c, "PRAGMA journal_mode = WAL")
	if err != nil {
		return err
	}
	if len(mode) != 1 || !strings.EqualFold(mode[0], "wal") {
		return fmt.Errorf("%w: journal_mode is %v", ErrNotWAL, mode)
	}
	if _, err := c.Exec(fmt.Sprintf("PRAGMA journal_size_limit = %d", o.WALLimitBytes), nil); err != nil {
		return err
	}
	// The checkpointer (checkpoint.go) copies the WAL into the database
	// file, off the commit path: the writer's own automatic checkpoint is
	// off.
	if _, err := c.Exec("PRAGMA wal_autocheckpoint = 0", nil); err != nil {
		return err
	}
	if _, err := c.Exec(createSchema, nil); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	return nil
}

func queryStrings(c *sqlite3.SQLiteConn, q string) ([]string, error) {
	rows, err := c.Query(q, nil)
	if err != nil {
		return nil, err
	}
	var out []string
	if err := eachRow(rows, func(v []driver.Value) error {
		out = append(out, asString(v[0]))
		return nil
	}); err != nil {
		return nil, err
	}
	return out, nil
}

// eachRow calls fn with every row of rows, in one slice reused from row
// to row, until the rows end or rows or fn fails, and closes rows; it
// returns that first error.
func eachRow(rows driver.Rows, fn func(v []driver.Value) error) error {
	defer rows.Close()
	v := make([]driver.Value, len(rows.Columns()))
	for {
		err := rows.Next(v)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(v); err != nil {
			return err
		}
	}
}

func queryInt(c *sqlite3.SQLiteConn, q string) (int64, error) {
	rows, err := c.Query(q, nil)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	dest := make([]driver.Value, len(rows.Columns()))
	if err := rows.Next(dest); err != nil {
		return 0, err
	}
	n, _ := dest[0].(int64)
	return n, nil
}

func asString(v driver.Value) string {
	switch v := v.(type) {
	case []byte:
		return string(v)
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}
