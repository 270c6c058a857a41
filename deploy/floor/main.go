// Command floor is the ideal writer of deploy/bench --floor: it inserts the
// rows a load stored, straight into event and its five indexes, in very
// large transactions, and checkpoints them into the database file, so that
// the bytes it makes the disk write are the least any writer that keeps
// event (Pycolytics' table and indexes) in a WAL database with
// synchronous=FULL can write for those rows. No staging, no summaries
// unless asked, no commit per request unless asked.
//
// Usage:
//
//	floor -rows ROWS.db -db FLOOR.db -after A -upto B [-tx N] [-summaries] [-commits N]
//
// ROWS.db holds a table "rows" with event's columns (deploy/bench copies a
// load's rows there from the server's database). floor creates FLOOR.db
// with the server's schema if it is missing (shard.Open, staging off), then
// inserts the rows with A < id <= B in id order:
//
//	-tx N        N rows a transaction (0: all of them in one)
//	-commits N   instead: N transactions that append the rows to a table
//	             without indexes (the least a writer that commits each
//	             request can write), then one transaction that moves them
//	             into event
//	-summaries   then builds today's summary tables (shard's own pass,
//	             summary.go) for every row of event, in one transaction
//
// and ends with PRAGMA wal_checkpoint(TRUNCATE): every page is then in the
// database file. WAL checkpoints happen only there (wal_autocheckpoint=0),
// so a page dirtied by several transactions reaches the file once. It
// prints one line, "FLOOR rows=R write_bytes=W seconds=S": W is the
// process's write_bytes less cancelled_write_bytes from /proc/self/io (what
// it sent to storage, the checkpoint included; a page written into a large
// page-cache folio, as a cp or a 1 MiB write leaves, counts the whole
// folio there, so the bench writes its files in 4 KiB blocks); the bench
// counts the device around it. Like the server, it syncs with fdatasync
// (shard's VFS), and its WAL keeps its size until the final checkpoint:
// given a grown WAL file (the bench writes one of zeros first), commits
// do not grow it.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gocolytics/gocolytics/shard"
)

const columns = "event_type, application, version, platform, user_id, session_id, value, id, time"

type config struct {
	rows, db    string
	after, upto int64
	tx          int64
	commits     int64
	summaries   bool
	cacheMiB    int
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		var usage usageError
		if errors.As(err, &usage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

func run(args []string, stdout io.Writer) error {
	var c config
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.rows, "rows", "", "file whose table rows holds the load's rows")
	fs.StringVar(&c.db, "db", "", "the floor's database (created if missing)")
	fs.Int64Var(&c.after, "after", 0, "insert the rows with id above this")
	fs.Int64Var(&c.upto, "upto", math.MaxInt64, "and at most this")
	fs.Int64Var(&c.tx, "tx", 0, "rows a transaction (0: one transaction)")
	fs.Int64Var(&c.commits, "commits", 0, "append in this many transactions to a table without indexes, then move")
	fs.BoolVar(&c.summaries, "summaries", false, "build the summary tables in one pass after the insert")
	fs.IntVar(&c.cacheMiB, "cache", 1024, "page cache MiB (enough to hold a transaction's pages)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if c.rows == "" || c.db == "" || fs.NArg() > 0 || c.tx < 0 || c.commits < 0 || c.after < 0 || c.upto < c.after {
		return usageError{errors.New("usage: floor -rows ROWS.db -db FLOOR.db [-after A] [-upto B] [-tx N | -commits N] [-summaries]")}
	}
	start := time.Now()
	// The server's schema (and its VFS, registered by Open), staging off;
	// with summaries on, so that their state row stays.
	sh, err := openShard(c.db, c.summaries)
	if err != nil {
		return err
	}
	// The floor's own connection, open before the server's closes: the
	// last connection to close would delete the WAL file, and a new one
	// grows again, a file system journal commit at each sync. Like the
	// server's, the WAL keeps its size (deploy/bench writes it out first).
	db, err := conn(c.db, c.rows, c.cacheMiB)
	if err != nil {
		sh.Close()
		return err
	}
	defer db.Close()
	if err := sh.Close(); err != nil {
		return err
	}
	n, err := insert(db, c)
	if err != nil {
		return err
	}
	if c.summaries {
		sh, err := openShard(c.db, true)
		if err != nil {
			return err
		}
		if err := sh.Summarize(context.Background()); err != nil {
			sh.Close()
			return fmt.Errorf("summarise: %w", err)
		}
		if err := sh.Close(); err != nil {
			return err
		}
	}
	if err := checkpoint(db); err != nil {
		return err
	}
	w, err := writeBytes()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "FLOOR rows=%d write_bytes=%d seconds=%.1f\n", n, w, time.Since(start).Seconds())
	return nil
}

// openShard opens the database as the server would with staging off, with
// or without summary tables: it creates the schema if missing.
func openShard(path string, summaries bool) (*shard.DB, error) {
	opts := shard.Options{MergeInterval: -1, SummaryInterval: -1}
	if summaries {
		// Never a pass of its own accord; Summarize's takes every row.
		opts.SummaryInterval, opts.SummaryRows = 24*time.Hour, math.MaxInt32
	}
	db := shard.New(path, opts, slog.New(slog.DiscardHandler))
	if err := db.Open(); err != nil {
		return nil, err
	}
	return db, nil
}

// conn opens one connection to path with the floor's pragmas, the rows
// file attached as r when rows is set.
func conn(path, rows string, cacheMiB int) (*sql.DB, error) {
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode = WAL").Scan(&mode); err != nil || mode != "wal" {
		db.Close()
		return nil, fmt.Errorf("journal_mode: got %q: %v", mode, err)
	}
	// temp_store: a statement journal in memory, not in a file elsewhere.
	pragmas := []string{"PRAGMA synchronous = FULL", "PRAGMA wal_autocheckpoint = 0", "PRAGMA temp_store = MEMORY",
		"PRAGMA cache_size = -" + strconv.Itoa(cacheMiB*1024)}
	if rows != "" {
		pragmas = append(pragmas, "ATTACH DATABASE '"+strings.ReplaceAll(rows, "'", "''")+"' AS r")
	}
	for _, q := range pragmas {
		if _, err := db.Exec(q); err != nil {
			db.Close()
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	return db, nil
}

// insert puts the rows A < id <= B into event as c says; it returns how
// many.
func insert(db *sql.DB, c config) (int64, error) {
	var n int64
	if err := db.QueryRow("SELECT count(*) FROM r.rows WHERE id > ? AND id <= ?", c.after, c.upto).Scan(&n); err != nil {
		return 0, fmt.Errorf("count rows: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	target, per := "main.event", c.tx
	if c.commits > 0 {
		target, per = "main.floor_staging", (n+c.commits-1)/c.commits
		if _, err := db.Exec("CREATE TABLE IF NOT EXISTS main.floor_staging (event_type, application, version, platform, user_id, session_id, value, id INTEGER PRIMARY KEY, time)"); err != nil {
			return 0, err
		}
	}
	if per == 0 {
		per = n
	}
	for lo := c.after; ; {
		var hi sql.NullInt64
		if err := db.QueryRow("SELECT max(id) FROM (SELECT id FROM r.rows WHERE id > ? AND id <= ? ORDER BY id LIMIT ?)", lo, c.upto, per).Scan(&hi); err != nil {
			return 0, err
		}
		if !hi.Valid {
			break
		}
		if err := exec(db, "INSERT INTO "+target+" ("+columns+") SELECT "+columns+" FROM r.rows WHERE id > ? AND id <= ? ORDER BY id", lo, hi.Int64); err != nil {
			return 0, err
		}
		lo = hi.Int64
	}
	if c.commits > 0 {
		if err := exec(db, "INSERT INTO main.event ("+columns+") SELECT "+columns+" FROM main.floor_staging ORDER BY id; DELETE FROM main.floor_staging"); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// exec runs q in a transaction of its own.
func exec(db *sql.DB, q string, args ...any) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	if _, err := tx.Exec(q, args...); err != nil {
		tx.Rollback()
		return fmt.Errorf("insert: %w", err)
	}
	return tx.Commit()
}

// checkpoint copies the WAL into the database file and empties it.
func checkpoint(db *sql.DB) error {
	var busy, log, done int
	if err := db.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &log, &done); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if busy != 0 {
		return errors.New("checkpoint: the database was busy")
	}
	return nil
}

// writeBytes is what this process sent to storage so far.
func writeBytes() (int64, error) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, err
	}
	var w, cancelled int64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		switch k {
		case "write_bytes":
			w, _ = strconv.ParseInt(v, 10, 64)
		case "cancelled_write_bytes":
			cancelled, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return w - cancelled, nil
}
