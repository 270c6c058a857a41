package forward

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// columns are the event columns a batch copies, in the order of batch.Values.
var columns = []string{"event_type", "application", "version", "platform", "user_id", "session_id", "value", "time", "node_id", "src_id", "value_text"}

// batch holds the rows of one transaction, ready for COPY; it is the
// pgx.CopyFromSource of CopyFrom.
type batch struct {
	nodeID    string
	eraseType string
	erasures  []eraseEvent
	rows      []row
	times     []time.Time
	values    [][]byte
	originals [][]byte
	months    []month
	lastID    int64
	lastTime  time.Time
	converted int
	i         int
	vals      []any
}

func newBatch(nodeID, eraseType string, size int) *batch {
	return &batch{nodeID: nodeID, eraseType: eraseType, rows: make([]row, 0, size), vals: make([]any, len(columns))}
}

// prepare converts the rows read into what PostgreSQL takes.
func (b *batch) prepare() {
	b.times, b.values, b.originals, b.months = b.times[:0], b.values[:0], b.originals[:0], b.months[:0]
	b.converted, b.i, b.erasures = 0, -1, b.erasures[:0]
	seen := map[month]bool{}
	for k := range b.rows {
		r := &b.rows[k]
		changed := false
		for _, s := range []*string{&r.eventType, &r.application, &r.version, &r.platform, &r.userID, &r.sessionID} {
			if c := cleanText(*s); c != *s {
				*s, changed = c, true
			}
		}
		t, ok := parseTime(r.timeText)
		v, orig := jsonbValue(r.value)
		if orig != nil || !ok {
			changed = true
		}
		if changed {
			b.converted++
		}
		if b.eraseType != "" && r.eventType == b.eraseType {
			b.erasures = append(b.erasures, eraseEvent{userID: r.userID, application: r.application, srcID: r.id, time: t})
		}
		b.times, b.values, b.originals = append(b.times, t), append(b.values, v), append(b.originals, orig)
		if m := monthOf(t); !seen[m] {
			seen[m] = true
			b.months = append(b.months, m)
		}
	}
	if n := len(b.rows); n > 0 {
		b.lastID, b.lastTime = b.rows[n-1].id, b.times[n-1]
	}
}

// Next, Values and Err make batch a pgx.CopyFromSource.
func (b *batch) Next() bool { b.i++; return b.i < len(b.rows) }

func (b *batch) Values() ([]any, error) {
	r := &b.rows[b.i]
	v := b.vals
	v[0], v[1], v[2], v[3], v[4], v[5] = r.eventType, r.application, r.version, r.platform, r.userID, r.sessionID
	v[6], v[7], v[8], v[9] = b.values[b.i], b.times[b.i], b.nodeID, r.id
	if o := b.originals[b.i]; o != nil {
		v[10] = string(o)
	} else {
		v[10] = nil
	}
	return v, nil
}

func (b *batch) Err() error { return nil }

// forwardBatch copies the rows of b, which follow pos, and moves the node's
// position to the last of them, in one transaction: either both happen or
// neither.
func (f *Forwarder) forwardBatch(ctx context.Context, conn *pgx.Conn, b *batch, known map[month]bool, pos int64) error {
	b.i = -1
	if err := ensurePartitions(ctx, conn, known, b.months); err != nil {
		return err
	}
	err := f.copyBatch(ctx, conn, b, pos, false)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		// A unique violation means some of these rows are in PostgreSQL
		// already although the position says otherwise — only possible if
		// the position was moved back by hand. Copy the rest, skip those.
		f.logger.Warn("rows already in postgresql; skipping the duplicates", "node_id", f.cfg.NodeID, "after_id", pos)
		b.i = -1
		err = f.copyBatch(ctx, conn, b, pos, true)
	}
	if err != nil {
		return err
	}
	f.forwarded.Add(len(b.rows))
	if b.converted > 0 {
		f.converted.Add(b.converted)
		f.logger.Warn("rows converted for postgresql (originals kept in value_text; NUL in text columns became U+FFFD)",
			"node_id", f.cfg.NodeID, "rows", b.converted, "last_id", b.lastID)
	}
	return nil
}

func (f *Forwarder) copyBatch(ctx context.Context, conn *pgx.Conn, b *batch, pos int64, skipDuplicates bool) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.Background())
	if skipDuplicates {
		if _, err := tx.Exec(ctx, "CREATE TEMP TABLE forward_batch (LIKE event INCLUDING DEFAULTS) ON COMMIT DROP"); err != nil {
			return fmt.Errorf("create temp table: %w", err)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"forward_batch"}, columns, b); err != nil {
			return fmt.Errorf("copy rows after id %d: %w", pos, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO event SELECT * FROM forward_batch ON CONFLICT DO NOTHING"); err != nil {
			return fmt.Errorf("insert rows after id %d: %w", pos, err)
		}
	} else if n, err := tx.CopyFrom(ctx, pgx.Identifier{"event"}, columns, b); err != nil {
		return fmt.Errorf("copy rows after id %d: %w", pos, err)
	} else if int(n) != len(b.rows) {
		return fmt.Errorf("copy rows after id %d: %d of %d copied", pos, n, len(b.rows))
	}
	for _, e := range b.erasures {
		if err := f.eraseEarlier(ctx, tx, e); err != nil {
			return err
		}
	}
	tag, err := tx.Exec(ctx, "UPDATE forward_position SET last_id = $2, last_time = $3, updated_at = now() WHERE node_id = $1 AND last_id = $4",
		f.cfg.NodeID, b.lastID, b.lastTime, pos)
	if err != nil {
		return fmt.Errorf("advance the position: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("%w: expected last_id %d", ErrPositionMoved, pos)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit rows after id %d: %w", pos, err)
	}
	return nil
}
