package forward

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// retain applies RETENTION_DAYS in PostgreSQL: partitions whose whole
// month is older than the cutoff are dropped (cheap, no row by row
// delete), and the rows before the cutoff in the month it falls in are
// deleted. It runs under the schema lock, so nodes doing it at the same
// time take turns.
func (f *Forwarder) retain(ctx context.Context, conn *pgx.Conn, known map[month]bool, now time.Time) error {
	if f.cfg.RetentionDays <= 0 {
		return nil
	}
	cutoff := now.UTC().AddDate(0, 0, -f.cfg.RetentionDays)
	boundary := monthOf(cutoff)
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", lockSchema); err != nil {
		return fmt.Errorf("take the schema lock: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'event'::regclass`)
	if err != nil {
		return fmt.Errorf("list partitions: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list partitions: %w", err)
	}
	var dropped []month
	for _, name := range names {
		var m month
		if _, err := fmt.Sscanf(strings.TrimPrefix(name, "event_"), "y%04dm%02d", &m.y, &m.m); err != nil || m.name() != name {
			continue // not one of ours
		}
		if m.start().Before(boundary.start()) {
			if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{name}.Sanitize()); err != nil {
				return fmt.Errorf("drop partition %s: %w", name, err)
			}
			dropped = append(dropped, m)
		}
	}
	tag, err := tx.Exec(ctx, "DELETE FROM event WHERE time < $1", time.Date(cutoff.Year(), cutoff.Month(), cutoff.Day(), cutoff.Hour(), cutoff.Minute(), cutoff.Second(), 0, time.UTC))
	if err != nil {
		return fmt.Errorf("delete rows before %s: %w", cutoff.Format(time.DateTime), err)
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	for _, m := range dropped {
		delete(known, m)
	}
	if len(dropped) > 0 || tag.RowsAffected() > 0 {
		f.logger.Info("retention in postgresql", "partitions_dropped", len(dropped), "rows_deleted", tag.RowsAffected(), "older_than", cutoff.Format(time.RFC3339))
	}
	return nil
}
