// Package shardtest holds test fixtures for anything that opens the event
// database: the shard itself, the HTTP server over it, and the binary.
package shardtest

import (
	"context"
	"database/sql"
	"sync"
	"testing"

	_ "github.com/mattn/go-sqlite3" // the driver the lock is taken with
)

// Lock is another connection holding the database's write lock, as a
// sqlite3 shell inside BEGIN EXCLUSIVE or a backup would.
type Lock struct {
	db   *sql.DB
	conn *sql.Conn
	once sync.Once
}

// HoldLock takes the write lock of the database at path (waiting up to
// 10 s for a writer under way) and returns once it holds it. The lock is let
// go by Release, or when the test ends. For a binary under test, the test
// process is the other process.
func HoldLock(tb testing.TB, path string) *Lock {
	tb.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=10000")
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		db.Close()
		tb.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
		conn.Close()
		db.Close()
		tb.Fatalf("take the write lock of %s: %v", path, err)
	}
	l := &Lock{db: db, conn: conn}
	tb.Cleanup(func() { l.Release(tb) })
	return l
}

// Release ends the lock's empty transaction and closes its connection.
// Calling it again does nothing.
func (l *Lock) Release(tb testing.TB) {
	tb.Helper()
	l.once.Do(func() {
		if _, err := l.conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
			tb.Errorf("release the write lock: %v", err)
		}
		l.conn.Close()
		l.db.Close()
	})
}
