package shard

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"
)

// Errors a Write can return besides ErrClosed. Each wraps SQLite's own error.
var (
	ErrDiskFull = errors.New("database or disk is full")
	ErrBusy     = errors.New("database is locked by another process")
	ErrCommit   = errors.New("commit failed")
)

// request is one caller's group of events, waiting for its commit.
type request struct {
	events []Event
	done   chan error
}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan error, 1)} }}

// queue is one shard of the writer's input. Callers append under its mutex;
// the writer swaps the slice out whole. The padding keeps two shards off one
// cache line.
type queue struct {
	mu     sync.Mutex
	reqs   []*request
	closed bool
	_      [40]byte
}

// Stats are counters for status lines, health checks and metrics.
type Stats struct {
	EventsStored  uint64
	Commits       uint64
	FailedCommits uint64
	QueuedEvents  int64
	// Stuck is how long the transaction under way has taken; zero when the
	// writer is idle or between transactions.
	Stuck time.Duration
	// LastError is the error of the last commit, nil when it succeeded.
	LastError error
	// RowsErased and RowsPruned count the rows deleted by erasure (Erase,
	// ERASE_EVENT_TYPE) and by retention (Prune).
	RowsErased, RowsPruned uint64
	// Merges and EventsMerged count the merges from the staging table into
	// event and the events they moved.
	Merges       uint64
	EventsMerged uint64
}

// DB is the database and its writer: one goroutine that owns the
// only write connection and commits whatever the queues hold, many events a
// transaction. See DESIGN.md.
type DB struct {
	// created is what Open created, for RemoveCreated.
	created []string
	path    string
	opts    Options
	logger  *slog.Logger

	conn *sqlite3.SQLiteConn
	stmt driver.StmtExecContext
	// merge is the staging state; nil when merging is off.
	merge *merger
	// sum is the state of the summary tables (summary.go); nil when
	// they are off.
	sum *summaries
	// resume are the ERASE_EVENT_TYPE erasures a previous run did not
	// finish, found by Open; the writer starts with them (jobs.go).
	resume []erasure
	// ckpt copies the WAL into the database file (checkpoint.go).
	ckpt *checkpointer

	queues []queue
	jobs   chan *job
	// mergeNow carries Merge's requests to the writer.
	mergeNow chan chan error
	// summarizeNow carries Summarize's requests to the writer.
	summarizeNow chan chan error
	// valueAsks carries the value fields readers asked for (valuefield.go).
	valueAsks chan valueAsk
	wake      chan struct{}
	stop      chan struct{}
	exited    chan struct{}

	closeOnce sync.Once
	closeErr  error

	stored    atomic.Uint64
	commits   atomic.Uint64
	failed    atomic.Uint64
	queued    atomic.Int64
	busySince atomic.Int64
	lastErr   atomic.Pointer[error]
	erased    atomic.Uint64
	pruned    atomic.Uint64
	merges    atomic.Uint64
	merged    atomic.Uint64

	// OnMerge, when set before Open, is called by the writer after every
	// merge with the events it moved and its duration (for metrics).
	OnMerge func(events int, took time.Duration)

	// OnCommit, when set before Open, is called by the writer after every
	// transaction with its size, duration and outcome (for metrics).
	OnCommit func(events int, took time.Duration, err error)
	// AfterErase, when set, is called after Erase has deleted a player's
	// rows here, to erase them where copies went (PostgreSQL); its error
	// is Erase's error, so that the caller knows to erase again.
	AfterErase func(ctx context.Context, userID, application string) error
}

// New returns a DB for the file at path. It does no I/O.
func New(path string, opts Options, logger *slog.Logger) *DB {
	opts = opts.withDefaults()
	if opts.Shards <= 0 {
		opts.Shards = runtime.GOMAXPROCS(0)
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &DB{
		path:         path,
		opts:         opts,
		logger:       logger.With("component", "shard"),
		queues:       make([]queue, opts.Shards),
		jobs:         make(chan *job),
		mergeNow:     make(chan chan error),
		summarizeNow: make(chan chan error),
		valueAsks:    make(chan valueAsk, 64),
		wake:         make(chan struct{}, 1),
		stop:         make(chan struct{}),
		exited:       make(chan struct{}),
	}
}

// Path returns the database file's path.
func (db *DB) Path() string { return db.path }

// Open opens the database, creates the schema if needed, prepares the insert
// statement and starts the writer.
func (db *DB) Open() error {
	switch db.opts.Synchronous {
	case "FULL", "NORMAL", "EXTRA":
	default:
		return ErrBadSynchronous
	}
	c, created, err := openConn(db.path, db.opts)
	if err != nil {
		return err
	}
	st, err := c.Prepare(insertSQL)
	if err != nil {
		c.Close()
		removeCreated(created)
		return fmt.Errorf("prepare insert: %w", err)
	}
	db.conn, db.stmt = c, st.(driver.StmtExecContext)
	if err := db.openTables(); err != nil {
		db.merge.close()
		st.Close()
		c.Close()
		removeCreated(created)
		db.conn, db.stmt, db.merge, db.sum = nil, nil, nil, nil
		return fmt.Errorf("open database %q: %w", db.path, err)
	}
	if err := db.startCheckpointer(); err != nil {
		db.merge.close()
		st.Close()
		c.Close()
		removeCreated(created)
		db.conn, db.stmt, db.merge = nil, nil, nil
		return fmt.Errorf("open database %q: checkpoint connection: %w", db.path, err)
	}
	db.created = created
	if db.opts.EraseEventType != "" {
		db.findUnfinishedErasures()
	}
	go db.run()
	return nil
}

// openTables opens the staging table when merging is on (merging what a
// previous run left staged) and the summary tables.
func (db *DB) openTables() error {
	if db.opts.MergeInterval > 0 {
		if err := db.openStaging(); err != nil {
			return err
		}
	}
	if err := db.openSummaries(); err != nil {
		return fmt.Errorf("open summary tables: %w", err)
	}
	return nil
}

// RemoveCreated removes what Open created (the database file, its -wal and
// -shm, the folders made for them), for a start that fails after Open: the
// folder is left as it was. It is for a closed database that never
// committed an event; otherwise it does nothing.
func (db *DB) RemoveCreated() {
	select {
	case <-db.exited:
	default:
		return // not closed
	}
	if db.stored.Load() > 0 {
		return
	}
	removeCreated(db.created)
	db.created = nil
}

// Write queues events on shard n (any number; it is taken modulo the number
// of shards) and waits until the transaction that holds them has committed.
// A nil error means every event is on disk; otherwise none of them is. The
// events must stay untouched until Write returns.
func (db *DB) Write(n int, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	r := requestPool.Get().(*request)
	r.events = events
	q := &db.queues[uint(n)%uint(len(db.queues))]
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		r.events = nil
		requestPool.Put(r)
		return ErrClosed
	}
	q.reqs = append(q.reqs, r)
	q.mu.Unlock()
	db.queued.Add(int64(len(events)))
	select {
	case db.wake <- struct{}{}:
	default:
	}
	err := <-r.done
	r.events = nil
	requestPool.Put(r)
	return err
}

// Stats returns the writer's counters.
func (db *DB) Stats() Stats {
	s := Stats{
		EventsStored:  db.stored.Load(),
		Commits:       db.commits.Load(),
		FailedCommits: db.failed.Load(),
		QueuedEvents:  db.queued.Load(),
		RowsErased:    db.erased.Load(),
		RowsPruned:    db.pruned.Load(),
		Merges:        db.merges.Load(),
		EventsMerged:  db.merged.Load(),
	}
	if b := db.busySince.Load(); b != 0 {
		s.Stuck = time.Since(time.Unix(0, b))
	}
	if e := db.lastErr.Load(); e != nil {
		s.LastError = *e
	}
	return s
}

// Close stops taking writes, commits everything already queued, and closes
// the database. It is safe to call more than once, and on a DB never opened.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		for i := range db.queues {
			q := &db.queues[i]
			q.mu.Lock()
			q.closed = true
			q.mu.Unlock()
		}
		if db.conn == nil {
			return
		}
		close(db.stop)
		<-db.exited
		if err := db.ckpt.close(); err != nil {
			db.closeErr = fmt.Errorf("close checkpoint connection: %w", err)
		}
		if err := db.merge.close(); err != nil && db.closeErr == nil {
			db.closeErr = fmt.Errorf("close statement: %w", err)
		}
		if err := db.stmt.(driver.Stmt).Close(); err != nil && db.closeErr == nil {
			db.closeErr = fmt.Errorf("close statement: %w", err)
		}
		if err := db.conn.Close(); err != nil && db.closeErr == nil {
			db.closeErr = fmt.Errorf("close database: %w", err)
		}
	})
	return db.closeErr
}

// run is the writer's loop.
func (db *DB) run() {
	defer close(db.exited)
	// args holds the eight columns of an event and, for the staging
	// ring, its id and slot.
	w := &writer{db: db, args: make([]driver.NamedValue, 10), spare: make([][]*request, len(db.queues)), chunkRows: jobChunkStart}
	for i := range w.args {
		w.args[i].Ordinal = i + 1
	}
	w.erasures, db.resume = db.resume, nil
	w.queueErasures()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		summary := db.summaryDue(time.Now(), w.lastCommit) <= 0
		if len(w.jobs) > 0 || summary {
			// A delete or a summary pass is under way: commit what ingest
			// has queued, take new jobs, then one chunk of the delete or
			// of the summary pass (in turns when both are under way: an
			// erasure never waits for a whole pass, nor the summaries for
			// a stream of deletes), and again. After a chunk of T, only
			// ingest is served for T: the chunks get at most half of the
			// writer's time.
			if d := time.Until(w.nextChunk); d > 0 {
				rest := time.NewTimer(d)
				select {
				case <-db.stop:
					w.nextChunk = time.Time{}
				case j := <-db.jobs:
					w.jobs = append(w.jobs, j)
				case <-db.wake:
					w.drain()
				case done := <-db.mergeNow:
					w.mergeNow(done)
				case done := <-db.summarizeNow:
					w.summarizeNow(done)
				case a := <-db.valueAsks:
					w.valueAsk(a)
				case <-rest.C:
				}
				rest.Stop()
				continue
			}
			select {
			case <-db.stop:
				w.finish()
				w.failJobs(ErrClosed)
				return
			case j := <-db.jobs:
				w.jobs = append(w.jobs, j)
			default:
			}
			w.drain()
			start := time.Now()
			if len(w.jobs) > 0 && (!summary || !w.summaryTurn) {
				w.runJob()
				w.summaryTurn = true
			} else {
				w.runSummaryChunk()
				w.summaryTurn = false
			}
			w.nextChunk = time.Now().Add(time.Since(start))
			w.mergeIfDue()
			continue
		}
		wait := db.summaryDue(time.Now(), w.lastCommit)
		if db.merge != nil {
			wait = min(wait, db.merge.due(db.opts, time.Now()))
		}
		timer.Reset(max(wait, time.Millisecond))
		select {
		case <-db.wake:
			w.pace()
			w.drain()
		case <-timer.C:
			w.mergeIfDue()
		case done := <-db.mergeNow:
			w.mergeNow(done)
		case done := <-db.summarizeNow:
			w.summarizeNow(done)
		case a := <-db.valueAsks:
			w.valueAsk(a)
		case j := <-db.jobs:
			w.jobs = append(w.jobs, j)
		case <-db.stop:
			w.finish()
			return
		}
	}
}

// mergeNow answers Merge: it commits what is queued and merges everything
// staged.
func (w *writer) mergeNow(done chan error) {
	w.drain()
	_, err := w.db.mergeAll()
	if err != nil {
		err = classify(err)
	}
	done <- err
}

// summarizeNow answers Summarize: it summarises every row of event.
func (w *writer) summarizeNow(done chan error) {
	err := w.db.summarizeAll(math.MaxInt64)
	if err != nil {
		err = classify(err)
	}
	done <- err
}

// finish commits what is queued, when every queue is closed (so that is all
// there is), merges everything staged and summarises up to SummaryRows rows
// (a bounded wait; the next run summarises the rest).
func (w *writer) finish() {
	w.drain()
	if w.db.merge != nil {
		if n, err := w.db.mergeAll(); err != nil {
			w.db.logger.Error("merge at shutdown failed; the events stay staged and are merged at the next start", "err", classify(err))
		} else {
			w.db.logger.Debug("merged at shutdown", "events", n)
		}
	}
	if err := w.db.summarizeAll(int64(w.db.opts.SummaryRows)); err != nil {
		w.db.logger.Error("summarising at shutdown failed; the next start summarises the rest", "err", classify(err))
	}
}

// writer is the state only the writer goroutine touches.
type writer struct {
	db      *DB
	args    []driver.NamedValue
	spare   [][]*request
	pending []*request
	// lastTime and lastStamp cache the formatting of the time column: the
	// events of one request share one time.
	lastTime  time.Time
	lastStamp string
	sinceWAL  int
	// lastCommit is when the last transaction of a group commit ended;
	// paceTimer is pace's timer.
	lastCommit time.Time
	paceTimer  *time.Timer
	// failures counts the commits failed in a row; unlogged those of them
	// not logged, lastFailLog when one last was.
	failures, unlogged int
	lastFailLog        time.Time
	// jobs are the deletes under way, run a chunk of chunkRows rows at a
	// time between group commits (jobs.go); erasures are the erasures
	// that ERASE_EVENT_TYPE events of the transaction under way ask for.
	jobs      []*job
	chunkRows int
	nextChunk time.Time
	// summaryTurn says the next chunk is the summary pass's, when a
	// delete is under way too.
	summaryTurn bool
	erasures    []erasure
	// ring is what the transaction under way leaves the staging ring
	// with: its last id, the watermark and the size (merge.go, room).
	ring struct{ hi, merged, slots int64 }
}

// paceMaxEvents is the most events queued for which pace still waits: a
// page of the staging table holds about ten events, so a commit of more
// fills its pages and gains little from waiting for company.
const paceMaxEvents = 16

// pace holds the commit of a request that woke an idle writer back for
// Options.CommitQuietWait, so that requests arriving meanwhile share its
// transaction: a quiet game's requests (one or two events each, a few a
// second) otherwise cost a commit each, whose WAL frame, fsync and
// checkpoint copy weigh ten times the events (DESIGN.md, "Staging and
// merge"). It waits only when the writer has been idle for at least as
// long since its last commit and few events are queued, so a busy server
// (the writer never idle) and a client that sends request after request
// never wait; a request of a quiet stretch waits at most that long for
// its 204.
func (w *writer) pace() {
	d := w.db.opts.CommitQuietWait
	if d <= 0 || time.Since(w.lastCommit) < d || w.db.queued.Load() > paceMaxEvents {
		return
	}
	if w.paceTimer == nil {
		w.paceTimer = time.NewTimer(d)
	} else {
		w.paceTimer.Reset(d)
	}
	select {
	case <-w.paceTimer.C:
	case <-w.db.stop:
		w.paceTimer.Stop()
	}
}

// drain takes everything queued and commits it, in groups of at most
// MaxBatchEvents (a request is never split), until the queues are empty.
func (w *writer) drain() {
	for {
		w.pending = w.pending[:0]
		for i := range w.db.queues {
			q := &w.db.queues[i]
			q.mu.Lock()
			taken := q.reqs
			q.reqs = w.spare[i][:0]
			q.mu.Unlock()
			w.pending = append(w.pending, taken...)
			clear(taken)
			w.spare[i] = taken
		}
		if len(w.pending) == 0 {
			return
		}
		group, n := 0, 0
		for i, r := range w.pending {
			if n > 0 && n+len(r.events) > w.db.opts.MaxBatchEvents {
				w.commit(w.pending[group:i], n)
				group, n = i, 0
			}
			n += len(r.events)
		}
		w.commit(w.pending[group:], n)
		clear(w.pending)
		w.mergeIfDue()
	}
}

// commit writes one group in one transaction and releases its requests with
// the outcome.
func (w *writer) commit(reqs []*request, n int) {
	db := w.db
	start := time.Now()
	db.busySince.Store(start.UnixNano())
	err := w.tx(reqs, n)
	if errors.Is(err, errRingFull) {
		// The ring has no room for the group beside the staged events:
		// merge them first (the group then fits, or the ring grows); a
		// ring that filled within the merge interval grows (merge.go).
		m := db.merge
		m.grow = time.Since(m.since) < db.opts.MergeInterval
		if _, err = db.mergeAll(); err == nil {
			err = w.tx(reqs, n)
		}
	}
	took := time.Since(start)
	w.lastCommit = start.Add(took)
	db.busySince.Store(0)
	db.queued.Add(-int64(n))
	if err != nil {
		err = classify(err)
		db.failed.Add(1)
		db.lastErr.Store(&err)
		w.logFailure(n, err)
	} else {
		db.stored.Add(uint64(n))
		db.commits.Add(1)
		if m := db.merge; m != nil {
			m.committed(w.ring.hi, w.ring.merged, w.ring.slots)
		}
		db.lastErr.Store(nil)
		if w.failures > 0 {
			db.logger.Info("commits succeed again", "failed_commits", w.failures)
			w.failures, w.unlogged = 0, 0
		}
	}
	if db.OnCommit != nil {
		db.OnCommit(n, took, err)
	}
	for _, r := range reqs {
		r.done <- err
	}
	if err == nil {
		w.queueErasures()
		w.limitWAL()
	}
}

// logFailure logs a failed commit, at most one a second: a full disk or a
// lock held past the busy timeout fails every commit, thousands a second
// under load, and the log would flood (onto the full disk, perhaps).
func (w *writer) logFailure(n int, err error) {
	w.failures++
	now := time.Now()
	if now.Sub(w.lastFailLog) < time.Second {
		w.unlogged++
		return
	}
	w.db.logger.Error("commit failed", "events", n, "err", err, "failures_not_logged", w.unlogged)
	w.lastFailLog, w.unlogged = now, 0
}

// tx writes the n events of reqs in one transaction.
func (w *writer) tx(reqs []*request, n int) error {
	c := w.db.conn
	if _, err := c.Exec("BEGIN IMMEDIATE", nil); err != nil {
		return err
	}
	ctx := context.Background()
	w.erasures = w.erasures[:0]
	eraseType := w.db.opts.EraseEventType
	stmt, args := w.db.stmt, w.args[:8]
	var id, slots int64
	m := w.db.merge
	if m != nil {
		// Staged events get their ids now, the ids INTEGER PRIMARY KEY
		// would give them in event, and keep them through the merge.
		var err error
		if id, err = m.firstID(); err != nil {
			return rollback(c, err)
		}
		r := &w.ring
		if r.merged, r.slots, err = m.room(c, id, n); err != nil {
			return rollback(c, err)
		}
		stmt, args, slots = m.stage, w.args, r.slots
	}
	for _, r := range reqs {
		for i := range r.events {
			w.bind(&r.events[i])
			w.args[8].Value = id
			if m != nil {
				w.args[9].Value = id % slots
			}
			res, err := stmt.ExecContext(ctx, args)
			if err != nil {
				return rollback(c, err)
			}
			if e := &r.events[i]; eraseType != "" && e.EventType == eraseType {
				before := id
				if m == nil {
					before, _ = res.LastInsertId()
				}
				w.erasures = append(w.erasures, erasure{user: e.UserID, app: e.Application, before: before})
			}
			id++
		}
	}
	if _, err := c.Exec("COMMIT", nil); err != nil {
		return rollback(c, err)
	}
	w.ring.hi = id - 1
	return nil
}

func (w *writer) bind(e *Event) {
	if !e.Time.Equal(w.lastTime) || w.lastStamp == "" {
		t := e.Time.UTC()
		if w.db.opts.LocalTime {
			t = e.Time.Local()
		}
		w.lastTime, w.lastStamp = e.Time, t.Format(TimeFormat)
	}
	a := w.args
	a[0].Value = e.EventType
	a[1].Value = e.Application
	a[2].Value = e.Version
	a[3].Value = e.Platform
	a[4].Value = e.UserID
	a[5].Value = e.SessionID
	a[6].Value = e.Value
	a[7].Value = w.lastStamp
}

// rollback ends a failed transaction. SQLite may have rolled it back itself
// (a full disk does that), in which case ROLLBACK fails harmlessly.
func rollback(c *sqlite3.SQLiteConn, cause error) error {
	if c.AutoCommit() {
		return cause
	}
	if _, err := c.Exec("ROLLBACK", nil); err != nil {
		return fmt.Errorf("%w (and rollback: %v)", cause, err)
	}
	return cause
}

// classify maps SQLite's error codes onto the sentinel errors callers act
// on. The result wraps both the sentinel and err, so that errors.As still
// finds SQLite's sqlite3.Error (its extended code included).
func classify(err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrFull:
			return fmt.Errorf("%w: %w", ErrDiskFull, err)
		case sqlite3.ErrBusy, sqlite3.ErrLocked:
			return fmt.Errorf("%w: %w", ErrBusy, err)
		}
	}
	return fmt.Errorf("%w: %w", ErrCommit, err)
}

// walCheckEvery is how many commits pass between two looks at the WAL size.
const walCheckEvery = 256

// limitWAL keeps the WAL file bounded. The checkpointer's PASSIVE
// checkpoints (every 1000 pages, checkpoint.go) normally do that; they
// cannot finish while readers hold old snapshots, so a WAL that has still
// outgrown the limit gets a TRUNCATE checkpoint, which waits for those
// readers.
func (w *writer) limitWAL() {
	w.sinceWAL++
	if w.sinceWAL < walCheckEvery {
		return
	}
	w.sinceWAL = 0
	fi, err := os.Stat(w.db.path + "-wal")
	if err != nil || fi.Size() <= w.db.opts.WALLimitBytes {
		return
	}
	if _, err := w.db.conn.Exec("PRAGMA wal_checkpoint(TRUNCATE)", nil); err != nil {
		w.db.logger.Warn("checkpoint failed", "wal_bytes", fi.Size(), "err", err)
	}
}
