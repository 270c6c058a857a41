package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// flight is one batch being copied on one connection, in a goroutine of its
// own, while the forwarding loop goes on: when a backlog drains, the next
// batch is copied on a second connection while this one commits, so that
// PostgreSQL works on two batches at once, on two cores (DESIGN.md,
// "Two connections").
type flight struct {
	b    *batch
	from int64 // the position b follows: the last id of the batch before
	conn *pgx.Conn
	done chan struct{} // closed when err is set
	err  error
}

// wait returns the flight's result once it has committed or failed.
func (fl *flight) wait(ctx context.Context) error {
	select {
	case <-fl.done:
		return fl.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fly starts copying b, which follows from, on conn. prev is the flight of
// the batch before b (nil when it is committed already): b's transaction
// copies its rows at once, beside prev's, but waits for prev's commit
// before its erasures and its position update, so the position still moves
// one batch at a time, in id order, each batch with its own rows. If prev
// fails, b rolls back.
func (f *Forwarder) fly(ctx context.Context, conn *pgx.Conn, b *batch, from int64, prev *flight) *flight {
	fl := &flight{b: b, from: from, conn: conn, done: make(chan struct{})}
	go func() {
		defer close(fl.done)
		fl.err = f.forwardBatch(ctx, conn, b, from, prev)
	}()
	return fl
}

// forwardBatch copies the rows of b, which follow from, and moves the
// node's position to the last of them, in one transaction: either both
// happen or neither.
func (f *Forwarder) forwardBatch(ctx context.Context, conn *pgx.Conn, b *batch, from int64, prev *flight) error {
	err := f.copyBatch(ctx, conn, b, from, prev, false)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		// A unique violation means some of these rows are in PostgreSQL
		// already although the position says otherwise — only possible if
		// the position was moved back by hand. Copy the rest, skip those.
		f.logger.Warn("rows already in postgresql; skipping the duplicates", "node_id", f.cfg.NodeID, "after_id", from)
		err = f.copyBatch(ctx, conn, b, from, prev, true)
	}
	return err
}

// copyBatch is one attempt of forwardBatch.
func (f *Forwarder) copyBatch(ctx context.Context, conn *pgx.Conn, b *batch, from int64, prev *flight, skipDuplicates bool) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.Background())
	if skipDuplicates {
		if _, err := tx.Exec(ctx, "CREATE TEMP TABLE forward_batch (LIKE event INCLUDING DEFAULTS) ON COMMIT DROP"); err != nil {
			return fmt.Errorf("create temp table: %w", err)
		}
		if _, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(b.buf), "COPY forward_batch ("+copyColumns+") FROM STDIN (FORMAT binary)"); err != nil {
			return fmt.Errorf("copy rows after id %d: %w", from, err)
		}
	} else if tag, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(b.buf), "COPY event ("+copyColumns+") FROM STDIN (FORMAT binary)"); err != nil {
		return fmt.Errorf("copy rows after id %d: %w", from, err)
	} else if n := tag.RowsAffected(); int(n) != b.rows {
		return fmt.Errorf("copy rows after id %d: %d of %d copied", from, n, b.rows)
	}
	// From here on the transaction reads and changes what the batch before
	// wrote: wait until it is committed. Each statement below sees it then
	// (READ COMMITTED), and if it failed this batch must not go either.
	if prev != nil {
		if err := prev.wait(ctx); err != nil {
			return fmt.Errorf("rows after id %d wait for the batch before: %w", from, err)
		}
	}
	if skipDuplicates {
		if _, err := tx.Exec(ctx, "INSERT INTO event SELECT * FROM forward_batch ON CONFLICT DO NOTHING"); err != nil {
			return fmt.Errorf("insert rows after id %d: %w", from, err)
		}
	}
	for _, e := range b.erasures {
		if err := f.eraseEarlier(ctx, tx, e); err != nil {
			return err
		}
	}
	tag, err := tx.Exec(ctx, "UPDATE forward_position SET last_id = $2, last_time = $3, updated_at = now() WHERE node_id = $1 AND last_id = $4",
		f.cfg.NodeID, b.lastID, b.lastTime, from)
	if err != nil {
		return fmt.Errorf("advance the position: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("%w: expected last_id %d", ErrPositionMoved, from)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit rows after id %d: %w", from, err)
	}
	return nil
}
