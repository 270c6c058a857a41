// Package forward copies each node's committed SQLite rows, in id order,
// to one PostgreSQL database, exactly once: the rows and the node's new
// position go in one PostgreSQL transaction. See DESIGN.md.
package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
)

// Defaults of Config.
const (
	// DefaultBatchRows is the most rows one PostgreSQL transaction copies.
	DefaultBatchRows = 10000
	// DefaultInterval is how often the forwarder looks for new rows once it
	// has caught up.
	DefaultInterval = time.Second
	// DefaultBehindAfter is the lag from which /healthz says forwarding is
	// behind.
	DefaultBehindAfter = 60 * time.Second
	// firstBackoff is the wait after the first failed attempt to reach
	// PostgreSQL; it doubles with each failure up to maxBackoff.
	firstBackoff = time.Second
	// maxBackoff caps the wait between attempts to reach PostgreSQL.
	maxBackoff = 10 * time.Second
)

// Sentinel errors.
var (
	ErrNodeInUse     = errors.New("another process is forwarding with this NODE_ID")
	ErrOtherDatabase = errors.New("NODE_ID's position in PostgreSQL belongs to another SQLite database")
	ErrPositionMoved = errors.New("NODE_ID's position in PostgreSQL was moved by someone else")
	ErrNoPostgresURL = errors.New("POSTGRES_URL is empty")
)

// Config says where to forward from and to.
type Config struct {
	// SQLitePath is the node's database file, read read-only.
	SQLitePath string
	// PostgresURL is a libpq URL or key=value connection string.
	PostgresURL string
	// NodeID names this node in PostgreSQL; it must be unique per node.
	NodeID string
	// BatchRows and Interval: see DefaultBatchRows and DefaultInterval.
	BatchRows int
	Interval  time.Duration
	// BehindAfter: see DefaultBehindAfter.
	BehindAfter time.Duration
	// RetentionDays, above 0, applies RETENTION_DAYS in PostgreSQL too, at
	// connection and hourly: old monthly partitions are dropped, the rest
	// of the boundary month deleted.
	RetentionDays int
	// EraseEventType is ERASE_EVENT_TYPE: when a row of this type is
	// forwarded, the earlier rows of its user_id (and application) are
	// deleted from PostgreSQL in the same transaction (see eraseEvent).
	EraseEventType string

	// backoff and maxBackoff are the first and the longest wait between
	// attempts to reach PostgreSQL (firstBackoff and maxBackoff when zero).
	// Unexported: operators have no reason to change them; the package's
	// tests shorten them so that a cut connection costs milliseconds.
	backoff, maxBackoff time.Duration
}

// DefaultNodeID is the host name, the default NODE_ID.
func DefaultNodeID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "gocolytics"
	}
	return h
}

// Validate checks the configuration without connecting anywhere and
// reports every problem at once. Its errors never hold the password.
func (c Config) Validate() error {
	var problems []string
	if strings.TrimSpace(c.PostgresURL) == "" {
		problems = append(problems, ErrNoPostgresURL.Error())
	} else if _, err := pgx.ParseConfig(c.PostgresURL); err != nil {
		problems = append(problems, redact(fmt.Errorf("POSTGRES_URL: %w", err), c.PostgresURL).Error())
	}
	if strings.TrimSpace(c.NodeID) == "" {
		problems = append(problems, "NODE_ID is empty")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.BatchRows <= 0 {
		c.BatchRows = DefaultBatchRows
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.BehindAfter <= 0 {
		c.BehindAfter = DefaultBehindAfter
	}
	if c.NodeID == "" {
		c.NodeID = DefaultNodeID()
	}
	if c.backoff <= 0 {
		c.backoff = firstBackoff
	}
	if c.maxBackoff <= 0 {
		c.maxBackoff = maxBackoff
	}
	return c
}

// Status is what the forwarder reports for /healthz, /metrics and the
// systemd status line.
type Status struct {
	// Connected is true while a PostgreSQL connection is up and claimed.
	Connected bool
	// Position is the id of the last row forwarded (as PostgreSQL says).
	Position int64
	// LagEvents is how many ids lie between Position and the newest row.
	LagEvents int64
	// LagSeconds is the age of the oldest row not yet forwarded; 0 when
	// every row is forwarded.
	LagSeconds float64
	// Forwarded counts rows copied since start; Errors failed attempts.
	Forwarded uint64
	Errors    uint64
	// Converted counts rows whose value or text PostgreSQL could not take
	// as stored (see jsonbValue, cleanText).
	Converted uint64
	// LastError is the last attempt's error (password removed), nil once
	// an attempt succeeds.
	LastError error
}

// Forwarder is one node's forwarder: New (no I/O), Start, Close.
type Forwarder struct {
	cfg    Config
	logger *slog.Logger

	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	erases chan eraseRequest

	mu     sync.Mutex
	status Status

	set       *metrics.Set
	forwarded *metrics.Counter
	errs      *metrics.Counter
	converted *metrics.Counter
}

// New returns a forwarder for cfg. It does no I/O; Start does.
func New(cfg Config, logger *slog.Logger) *Forwarder {
	if logger == nil {
		logger = slog.Default()
	}
	f := &Forwarder{
		cfg:    cfg.withDefaults(),
		logger: logger.With("component", "forward"),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		erases: make(chan eraseRequest),
		set:    metrics.NewSet(),
	}
	f.addMetrics()
	return f
}

// NodeID is the node's name in PostgreSQL.
func (f *Forwarder) NodeID() string { return f.cfg.NodeID }

// Start opens the read-only SQLite connection and starts forwarding in a
// goroutine of its own. PostgreSQL being down is not an error here: the
// forwarder keeps trying, and Status says so.
func (f *Forwarder) Start() error {
	src, err := openSource(f.cfg.SQLitePath)
	if err != nil {
		return err
	}
	go f.run(src)
	return nil
}

// Close stops forwarding, ending a transaction under way (it rolls back;
// its rows are sent again by the next start), and waits for the goroutine.
// It is nil-safe and may be called more than once.
func (f *Forwarder) Close() error {
	if f == nil {
		return nil
	}
	f.once.Do(func() { close(f.stop) })
	select {
	case <-f.done:
	case <-time.After(30 * time.Second):
		return errors.New("forwarder did not stop within 30s")
	}
	return nil
}

// Status returns the current state.
func (f *Forwarder) Status() Status {
	f.mu.Lock()
	s := f.status
	f.mu.Unlock()
	s.Forwarded, s.Errors, s.Converted = f.forwarded.Get(), f.errs.Get(), f.converted.Get()
	return s
}

// Behind returns nil while forwarding keeps up, else why not: PostgreSQL
// unreachable or refusing, or the oldest unforwarded row older than
// BehindAfter. Ingest is unaffected either way.
func (f *Forwarder) Behind() error {
	s := f.Status()
	switch {
	case !s.Connected && s.LastError != nil:
		return fmt.Errorf("forwarding to postgresql is behind by %d events (%.0fs): %w", s.LagEvents, s.LagSeconds, s.LastError)
	case s.LagSeconds > f.cfg.BehindAfter.Seconds():
		return fmt.Errorf("forwarding to postgresql is behind by %d events (%.0fs)", s.LagEvents, s.LagSeconds)
	}
	return nil
}

func (f *Forwarder) setStatus(fn func(*Status)) {
	f.mu.Lock()
	fn(&f.status)
	f.mu.Unlock()
}

// run is the forwarder's loop: connect, claim the node, copy batches; on
// any error drop the connection and start over after a growing pause
// (1 s, 2 s, ... 10 s), keeping the lag figures fresh meanwhile.
func (f *Forwarder) run(src *source) {
	defer close(f.done)
	defer src.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-f.stop
		cancel()
	}()
	backoff := f.cfg.backoff
	for {
		err := f.session(ctx, src)
		if ctx.Err() != nil {
			return
		}
		err = redact(err, f.cfg.PostgresURL)
		f.errs.Inc()
		f.setStatus(func(s *Status) { s.Connected, s.LastError = false, err })
		f.logger.Warn("forwarding to postgresql failed; retrying", "err", err, "retry_in", backoff.String())
		deadline := time.Now().Add(backoff)
		for time.Now().Before(deadline) {
			f.refreshLag(ctx, src)
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(time.Second, time.Until(deadline))):
			}
		}
		backoff = min(2*backoff, f.cfg.maxBackoff)
		if errors.Is(err, ErrNodeInUse) || errors.Is(err, ErrOtherDatabase) || errors.Is(err, ErrNewerSchema) {
			backoff = f.cfg.maxBackoff
		}
	}
}

// refreshLag updates the lag figures from SQLite alone (PostgreSQL may be
// down), counting from the last known position.
func (f *Forwarder) refreshLag(ctx context.Context, src *source) {
	pos := f.Status().Position
	maxID, oldest, err := src.lag(ctx, pos)
	if err != nil {
		return
	}
	f.setStatus(func(s *Status) {
		s.LagEvents = max(maxID-pos, 0)
		s.LagSeconds = 0
		if !oldest.IsZero() {
			s.LagSeconds = max(wallNow().Sub(oldest).Seconds(), 0)
		}
	})
}

// wallNow is the current wall clock in the form rows store it: UTC, or
// local for LOCAL_TIME databases is close enough for a lag figure only
// when the zone is UTC, so the lag is measured against UTC.
func wallNow() time.Time {
	n := time.Now().UTC()
	return time.Date(n.Year(), n.Month(), n.Day(), n.Hour(), n.Minute(), n.Second(), n.Nanosecond(), time.UTC)
}

// session is one connection's life: connect, migrate, claim the node id,
// read the position, then copy batches until an error or ctx ends. While a
// backlog drains (full batches), a second connection copies the next batch
// while the first commits (see fly).
func (f *Forwarder) session(ctx context.Context, src *source) error {
	conn, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	if _, err := migrate(ctx, conn); err != nil {
		return err
	}
	var claimed bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", lockNode+f.cfg.NodeID).Scan(&claimed); err != nil {
		return fmt.Errorf("claim NODE_ID %q: %w", f.cfg.NodeID, err)
	}
	if !claimed {
		return fmt.Errorf("%w: %q", ErrNodeInUse, f.cfg.NodeID)
	}
	pos, lastTime, err := f.position(ctx, conn, src)
	if err != nil {
		return err
	}
	known := map[month]bool{}
	if err := f.maintain(ctx, conn, known); err != nil {
		return err
	}
	f.setStatus(func(s *Status) { s.Connected, s.Position, s.LastError = true, pos, nil })
	f.logger.Info("forwarding to postgresql", "node_id", f.cfg.NodeID, "position", pos)

	// The batches in flight: at most two, the later one on the connection
	// the earlier one does not use. sent is the last id handed to one.
	var (
		second   *pgx.Conn
		inflight *flight
		sent     = pos
		sentTime = lastTime
	)
	fctx, cancelFlights := context.WithCancel(ctx)
	defer func() {
		// A flight still under way is cut short (its transaction rolls
		// back, or, if its COMMIT was under way, the next session reads
		// the position back) before the connections close.
		cancelFlights()
		if inflight != nil {
			<-inflight.done
		}
		if second != nil {
			closeConn(second)
		}
	}()
	ahead := f.startReadAhead(ctx, src, pos)
	defer func() { ahead.stop() }()
	// land waits for a flight and takes its result; landAll lands the
	// flight under way, if any.
	land := func(fl *flight) error {
		if fl == nil {
			return nil
		}
		if err := fl.wait(ctx); err != nil {
			return err
		}
		pos, lastTime = fl.b.lastID, fl.b.lastTime
		f.forwarded.Add(fl.b.rows)
		if fl.b.converted > 0 {
			f.converted.Add(fl.b.converted)
			f.logger.Warn("rows converted for postgresql (originals kept in value_text; NUL in text columns became U+FFFD)",
				"node_id", f.cfg.NodeID, "rows", fl.b.converted, "last_id", fl.b.lastID)
		}
		ahead.free <- fl.b
		f.setStatus(func(s *Status) { s.Position = pos })
		f.refreshLag(ctx, src)
		return nil
	}
	landAll := func() error {
		if err := land(inflight); err != nil {
			return err
		}
		inflight = nil
		return nil
	}
	lastMaintained := time.Now()
	tick := time.NewTicker(f.cfg.Interval)
	defer tick.Stop()
	for {
		if time.Since(lastMaintained) > time.Hour {
			if err := landAll(); err != nil {
				return err
			}
			if err := f.maintain(ctx, conn, known); err != nil {
				return err
			}
			lastMaintained = time.Now()
		}
		if !sentTime.IsZero() {
			// Ids given again (see source.rewind)? Checked from SQLite
			// alone; moving back needs the batches in flight landed.
			back, err := src.rewind(ctx, sent, sentTime)
			if err != nil {
				return err
			}
			if back != sent {
				if err := landAll(); err != nil {
					return err
				}
				back, backTime, err := f.rewind(ctx, conn, src, pos, lastTime)
				if err != nil {
					return err
				}
				// The batches read ahead start after the old position.
				ahead.stop()
				pos, lastTime = back, backTime
				sent, sentTime = pos, lastTime
				ahead = f.startReadAhead(ctx, src, pos)
			}
		}
		var landed <-chan struct{}
		if inflight != nil {
			landed = inflight.done
		}
		select {
		case b := <-ahead.ready:
			if inflight != nil && b.rows < f.cfg.BatchRows {
				// No backlog: one connection, one batch at a time, so a
				// caught-up node keeps to one session's block of ids.
				if err := landAll(); err != nil {
					return err
				}
			}
			c := conn
			if inflight != nil && inflight.conn == conn {
				if second == nil {
					if second, err = f.connect(ctx); err != nil {
						return err
					}
				}
				c = second
			}
			if err := ensurePartitions(ctx, c, known, b.months); err != nil {
				return err
			}
			prev := inflight
			inflight = f.fly(fctx, c, b, sent, prev)
			sent, sentTime = b.lastID, b.lastTime
			if err := land(prev); err != nil {
				return err
			}
		case <-landed:
			if err := landAll(); err != nil {
				return err
			}
		case r := <-f.erases:
			// Batches read ahead may hold rows read before the local
			// erasure: drop them and read again after the delete.
			if err := landAll(); err != nil {
				return err
			}
			ahead.stop()
			if err := f.erase(ctx, conn, r); err != nil {
				return err
			}
			ahead = f.startReadAhead(ctx, src, pos)
		case err := <-ahead.errc:
			return err
		case <-tick.C:
			f.refreshLag(ctx, src)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// connect opens a connection to PostgreSQL.
func (f *Forwarder) connect(ctx context.Context) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, f.cfg.PostgresURL)
	if err != nil {
		return nil, fmt.Errorf("connect to postgresql: %w", err)
	}
	return conn, nil
}

func closeConn(conn *pgx.Conn) {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn.Close(c)
}

// maintain creates the partitions of this month and the next ones and
// applies RETENTION_DAYS in PostgreSQL: at connection and hourly.
func (f *Forwarder) maintain(ctx context.Context, conn *pgx.Conn, known map[month]bool) error {
	if err := ensurePartitions(ctx, conn, known, monthsAhead(time.Now())); err != nil {
		return err
	}
	return f.retain(ctx, conn, known, time.Now())
}

// position reads (creating it at 0) the node's position, and checks it
// belongs to this SQLite database: the row at the position, if still
// there, must have the time PostgreSQL recorded for it.
func (f *Forwarder) position(ctx context.Context, conn *pgx.Conn, src *source) (int64, time.Time, error) {
	if _, err := conn.Exec(ctx, "INSERT INTO forward_position (node_id, last_id) VALUES ($1, 0) ON CONFLICT (node_id) DO NOTHING", f.cfg.NodeID); err != nil {
		return 0, time.Time{}, fmt.Errorf("create the position of NODE_ID %q: %w", f.cfg.NodeID, err)
	}
	var pos int64
	var lastTime *time.Time
	if err := conn.QueryRow(ctx, "SELECT last_id, last_time FROM forward_position WHERE node_id = $1", f.cfg.NodeID).Scan(&pos, &lastTime); err != nil {
		return 0, time.Time{}, fmt.Errorf("read the position of NODE_ID %q: %w", f.cfg.NodeID, err)
	}
	if pos > 0 && lastTime != nil {
		t, ok, err := src.timeAt(ctx, pos)
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("check the position of NODE_ID %q: %w", f.cfg.NodeID, err)
		}
		if ok && !t.Truncate(time.Microsecond).Equal(lastTime.UTC()) {
			return 0, time.Time{}, fmt.Errorf("%w: row %d has time %s here and %s there; give each node its own NODE_ID",
				ErrOtherDatabase, pos, t.Format(time.DateTime), lastTime.Format(time.DateTime))
		}
	}
	if lastTime == nil {
		return pos, time.Time{}, nil
	}
	return pos, lastTime.UTC(), nil
}

// rewind moves the position back when SQLite has given ids at or below it
// to new rows (see source.rewind), in PostgreSQL first, so that those rows
// are forwarded too. Their (node_id, src_id) pairs are already in
// PostgreSQL with an older time, which the unique key tells apart.
func (f *Forwarder) rewind(ctx context.Context, conn *pgx.Conn, src *source, pos int64, lastTime time.Time) (int64, time.Time, error) {
	back, err := src.rewind(ctx, pos, lastTime)
	if err != nil || back == pos {
		return pos, lastTime, err
	}
	var backTime *time.Time
	if t, ok, err := src.timeAt(ctx, back); err != nil {
		return pos, lastTime, err
	} else if ok {
		backTime = &t
	}
	tag, err := conn.Exec(ctx, "UPDATE forward_position SET last_id = $2, last_time = $3, updated_at = now() WHERE node_id = $1 AND last_id = $4",
		f.cfg.NodeID, back, backTime, pos)
	if err != nil {
		return pos, lastTime, fmt.Errorf("move the position back: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return pos, lastTime, fmt.Errorf("%w: expected last_id %d", ErrPositionMoved, pos)
	}
	f.logger.Warn("SQLite gave new rows the ids of deleted newest rows; forwarding from the first of them", "node_id", f.cfg.NodeID, "from_id", back+1, "was", pos)
	f.setStatus(func(s *Status) { s.Position = back })
	if backTime == nil {
		return back, time.Time{}, nil
	}
	return back, *backTime, nil
}
