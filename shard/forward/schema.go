package forward

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// SchemaVersion is the PostgreSQL schema this build creates and writes. A
// database whose gocolytics_schema says more was migrated by a newer build;
// this one refuses to write to it.
const SchemaVersion = 3

// ErrNewerSchema is returned for a database migrated by a newer gocolytics.
var ErrNewerSchema = errors.New("postgresql schema is newer than this build knows")

// Advisory lock keys, in their own namespace so that they cannot meet the
// keys of another application sharing the database: the schema lock
// serialises migrations and partition creation between nodes; a node's
// lock makes one NODE_ID forward from one process at a time.
const (
	lockSchema = "gocolytics:schema"
	lockNode   = "gocolytics:node:"
)

// migrations[i] takes the schema from version i to i+1. Each runs in one
// transaction with the version bump.
var migrations = []string{
	// 1: the event table, partitioned by month of time, with Pycolytics'
	// columns (same names and meaning) and the node's own id of the row.
	// The unique key must hold the partition key (time): a row's time never
	// changes, so a re-sent (node_id, src_id) lands in the same partition
	// with the same time and still collides. See DESIGN.md.
	`
CREATE SEQUENCE event_id_seq AS bigint;
CREATE TABLE event (
	event_type text NOT NULL,
	application text NOT NULL,
	version text NOT NULL,
	platform text NOT NULL,
	user_id text NOT NULL,
	session_id text NOT NULL,
	value jsonb NOT NULL,
	id bigint NOT NULL DEFAULT nextval('event_id_seq'),
	time timestamp NOT NULL,
	node_id text NOT NULL,
	src_id bigint NOT NULL,
	value_text text,
	CONSTRAINT event_node_src_key UNIQUE (node_id, src_id, time)
) PARTITION BY RANGE (time);
ALTER SEQUENCE event_id_seq OWNED BY event.id;
CREATE INDEX event_application_time ON event (application, time);
CREATE INDEX event_application_type_time ON event (application, event_type, time);
CREATE INDEX event_user_id ON event (user_id);
COMMENT ON COLUMN event.value_text IS 'the value as the node stored it, when jsonb could not hold it exactly (NUL in a string, a number out of range); NULL otherwise';
COMMENT ON COLUMN event.src_id IS 'the row''s id in the SQLite database of node_id';
CREATE TABLE forward_position (
	node_id text PRIMARY KEY,
	last_id bigint NOT NULL,
	last_time timestamp,
	updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE forward_position IS 'per node: the id of the last row forwarded, advanced in the transaction that copies the rows';
`,
	// 2: the text columns compare byte by byte (COLLATE "C"), as SQLite's
	// BINARY does: the same order and grouping as on the node, and index
	// inserts that compare with memcmp instead of the database locale's
	// strcoll, which was the largest single cost of a COPY (DESIGN.md,
	// "Cost"). Indexes are rebuilt; the table is not rewritten. The id
	// sequence hands each session 1,000 values at a time instead of
	// locking and logging it per row (ids stay unique, not gapless).
	`
ALTER TABLE event
	ALTER COLUMN event_type TYPE text COLLATE "C",
	ALTER COLUMN application TYPE text COLLATE "C",
	ALTER COLUMN version TYPE text COLLATE "C",
	ALTER COLUMN platform TYPE text COLLATE "C",
	ALTER COLUMN user_id TYPE text COLLATE "C",
	ALTER COLUMN session_id TYPE text COLLATE "C",
	ALTER COLUMN node_id TYPE text COLLATE "C";
ALTER TABLE forward_position ALTER COLUMN node_id TYPE text COLLATE "C";
ALTER SEQUENCE event_id_seq CACHE 1000;
`,
	// 3: an index on id, for exports from PostgreSQL (STATS_SOURCE=postgres),
	// which page by id > after_id ORDER BY id: without it every page of
	// an unfiltered export read the whole table (quadratic). Ids come from
	// one sequence in blocks, so inserts land near the right edge of the
	// index (DESIGN.md, "Schema").
	`
CREATE INDEX event_id ON event (id);
`,
}

// migrate creates or upgrades the schema, under the schema lock so that
// nodes starting together do it once.
func migrate(ctx context.Context, conn *pgx.Conn) (int, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", lockSchema); err != nil {
		return 0, fmt.Errorf("take the schema lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS gocolytics_schema (
	one boolean PRIMARY KEY DEFAULT true CHECK (one),
	version integer NOT NULL)`); err != nil {
		return 0, fmt.Errorf("create gocolytics_schema: %w", err)
	}
	var v int
	err = tx.QueryRow(ctx, "SELECT version FROM gocolytics_schema").Scan(&v)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := tx.Exec(ctx, "INSERT INTO gocolytics_schema (version) VALUES (0)"); err != nil {
			return 0, err
		}
	case err != nil:
		return 0, fmt.Errorf("read the schema version: %w", err)
	}
	if v > SchemaVersion {
		return v, fmt.Errorf("%w: version %d (this build knows %d)", ErrNewerSchema, v, SchemaVersion)
	}
	for ; v < SchemaVersion; v++ {
		if _, err := tx.Exec(ctx, migrations[v]); err != nil {
			return v, fmt.Errorf("migrate the schema to version %d: %w", v+1, err)
		}
	}
	if _, err := tx.Exec(ctx, "UPDATE gocolytics_schema SET version = $1", v); err != nil {
		return v, err
	}
	return v, tx.Commit(ctx)
}

// month is the first instant of a calendar month, as a partition bound.
type month struct{ y, m int }

func monthOf(t time.Time) month { return month{t.Year(), int(t.Month())} }

func (m month) start() time.Time { return time.Date(m.y, time.Month(m.m), 1, 0, 0, 0, 0, time.UTC) }
func (m month) next() month      { return monthOf(m.start().AddDate(0, 1, 0)) }
func (m month) name() string     { return fmt.Sprintf("event_y%04dm%02d", m.y, m.m) }

// PartitionsAhead is how many months after the current one have their
// partition created before a row needs it.
const PartitionsAhead = 2

// ensurePartitions creates the partitions of the given months that this
// process has not seen yet, under the schema lock (two nodes creating the
// same partition at once would otherwise fail).
func ensurePartitions(ctx context.Context, conn *pgx.Conn, known map[month]bool, months []month) error {
	var todo []month
	for _, m := range months {
		if !known[m] {
			todo = append(todo, m)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", lockSchema); err != nil {
		return fmt.Errorf("take the schema lock: %w", err)
	}
	for _, m := range todo {
		q := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s PARTITION OF event FOR VALUES FROM ('%s') TO ('%s')",
			m.name(), m.start().Format("2006-01-02"), m.next().start().Format("2006-01-02"))
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("create partition %s: %w", m.name(), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	for _, m := range todo {
		known[m] = true
	}
	return nil
}

// monthsAhead are the current month and PartitionsAhead after it.
func monthsAhead(now time.Time) []month {
	m := monthOf(now.UTC())
	out := []month{m}
	for range PartitionsAhead {
		m = m.next()
		out = append(out, m)
	}
	return out
}
