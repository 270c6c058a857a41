package forward

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// eraseWait is how long Erase waits for a connection to PostgreSQL.
const eraseWait = 15 * time.Second

// ErrEraseNotForwarded is Erase's error when PostgreSQL could not be
// reached: the player's rows are gone from this node, not yet from
// PostgreSQL, and erasing again once it is back finishes the job.
var ErrEraseNotForwarded = errors.New("erased on this node, but postgresql could not be reached to erase there; erase again once it is back")

// eraseRequest asks the forwarding loop to erase a player in PostgreSQL.
type eraseRequest struct {
	userID, application string
	done                chan error
}

// Erase deletes every row of userID (of application, unless empty) from
// PostgreSQL, whichever node sent it. Call it after the rows are erased
// from this node's SQLite: the forwarding loop runs it between two batches
// and then reads again from SQLite, so no row read before the local
// erasure reaches PostgreSQL afterwards.
func (f *Forwarder) Erase(ctx context.Context, userID, application string) error {
	r := eraseRequest{userID: userID, application: application, done: make(chan error, 1)}
	timer := time.NewTimer(eraseWait)
	defer timer.Stop()
	select {
	case f.erases <- r:
	case <-timer.C:
		return ErrEraseNotForwarded
	case <-f.done:
		return ErrEraseNotForwarded
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// erase runs an erase request on the session's connection and answers it.
func (f *Forwarder) erase(ctx context.Context, conn *pgx.Conn, r eraseRequest) error {
	tag, err := conn.Exec(ctx, "DELETE FROM event WHERE user_id = $1 AND ($2 = '' OR application = $2)", r.userID, r.application)
	if err != nil {
		err = redact(fmt.Errorf("%w: %w", ErrEraseNotForwarded, err), f.cfg.PostgresURL)
		r.done <- err
		return err
	}
	f.logger.Info("erased a player's rows in postgresql", "rows", tag.RowsAffected())
	r.done <- nil
	return nil
}

// eraseEvent is a forwarded row of ERASE_EVENT_TYPE: on the node it
// deletes the rows of its user_id and application (every application when
// that is empty) with a smaller id (shard's erasure job).
type eraseEvent struct {
	userID, application string
	srcID               int64
	time                time.Time
}

// eraseEarlier does in PostgreSQL what e did on the node, inside the
// transaction that copies e's row: it deletes the player's rows this node
// sent with a smaller src_id (every one of them is in PostgreSQL by then,
// since rows go in id order, those of this batch included), and those other
// nodes sent with an earlier time. Being part of the batch's transaction
// makes it as durable as the row itself: while PostgreSQL is down the
// batch waits in SQLite with the rest, and a batch sent again deletes
// again, which changes nothing.
func (f *Forwarder) eraseEarlier(ctx context.Context, tx pgx.Tx, e eraseEvent) error {
	tag, err := tx.Exec(ctx, `DELETE FROM event WHERE user_id = $1 AND ($2 = '' OR application = $2)
	AND CASE WHEN node_id = $3 THEN src_id < $4 ELSE time < $5 END`,
		e.userID, e.application, f.cfg.NodeID, e.srcID, e.time)
	if err != nil {
		return fmt.Errorf("erase the earlier rows of an %s event (id %d): %w", f.cfg.EraseEventType, e.srcID, err)
	}
	f.logger.Info("erased a player's earlier rows in postgresql", "event_type", f.cfg.EraseEventType, "src_id", e.srcID, "rows", tag.RowsAffected())
	return nil
}
