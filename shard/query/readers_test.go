package query_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/query"
)

// TestReader_AtMostMaxReaders: four queries run at once (DefaultMaxReaders);
// a fifth waits for a free connection and, past its time limit, fails with
// ErrTimeout (which the HTTP layer answers 503); one that is waiting when a
// query finishes gets its connection. All the while the writer commits as
// usual: readers holding their snapshots never hold it up.
func TestReader_AtMostMaxReaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	db := shard.New(path, shard.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	batch := func(n, from int) []shard.Event {
		ev := make([]shard.Event, n)
		for i := range ev {
			ev[i] = event(from+i, "app", "start", time.Now())
		}
		return ev
	}
	if err := db.Write(0, batch(1000, 0)); err != nil {
		t.Fatal(err)
	}
	r, err := query.Open(path, query.Options{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// Four long reads: each holds a connection and its snapshot while its
	// rows are open.
	var held []*sql.Rows
	defer func() {
		for _, rows := range held {
			rows.Close()
		}
	}()
	for i := range query.DefaultMaxReaders {
		rows, err := r.QueryContext(context.Background(), "SELECT id FROM event_all")
		if err != nil || !rows.Next() {
			t.Fatalf("reader %d: %v", i, err)
		}
		held = append(held, rows)
	}

	ctx, cancel := r.Limit(context.Background())
	start := time.Now()
	_, err = r.QueryContext(ctx, "SELECT count(*) FROM event_all")
	cancel()
	if !errors.Is(err, query.ErrTimeout) {
		t.Fatalf("a fifth query while four run: got %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("the fifth query failed after %v; want it to wait for a connection up to its 300 ms limit", d)
	}

	// The writer is not held up by the four open snapshots.
	for i := range 50 {
		wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
		errc := make(chan error, 1)
		go func() { errc <- db.Write(0, batch(10, 1000+10*i)) }()
		select {
		case err := <-errc:
			if err != nil {
				t.Fatalf("write %d while four readers hold snapshots: %v", i, err)
			}
		case <-wctx.Done():
			t.Fatalf("write %d not committed within 5 s while four readers hold snapshots", i)
		}
		wcancel()
	}

	// A fifth that waits gets the first connection let go of, and sees
	// every committed event.
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var n int
		err := r.QueryRowContext(ctx, "SELECT count(*) FROM event_all").Scan(&n)
		if err == nil && n != 1500 {
			err = fmt.Errorf("counted %d rows, want 1500", n)
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a fifth query ran while four were running: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	held[0].Close()
	if err := <-done; err != nil {
		t.Fatalf("the waiting query, once a reader finished: %v", err)
	}
}

// TestReader_Mmap: with Options.MmapSize the read-only connections map the
// database file (PRAGMA mmap_size), also under the process's own VFS, which
// the writer registers; they still see each commit of the writer (which
// reads and writes without a mapping); by default nothing is mapped.
func TestReader_Mmap(t *testing.T) {
	if _, err := os.Stat("/proc/self/maps"); err != nil {
		t.Skipf("no /proc/self/maps to see the mappings in: %v", err)
	}
	path := filepath.Join(t.TempDir(), "events.db")
	// write writes 500 events through a writer of its own, closed (merged
	// into event) at the end.
	write := func(from int) {
		t.Helper()
		db := shard.New(path, shard.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err := db.Open(); err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		ev := make([]shard.Event, 500)
		for i := range ev {
			ev[i] = event(from+i, "app", "start", time.Now())
		}
		if err := db.Write(0, ev); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	mapped := func() bool {
		t.Helper()
		maps, err := os.ReadFile("/proc/self/maps")
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(maps)) {
			if strings.HasSuffix(strings.TrimRight(line, "\n"), " "+path) {
				return true
			}
		}
		return false
	}
	count := func(r *query.Reader) (n int) {
		t.Helper()
		if err := r.QueryRowContext(context.Background(), "SELECT count(*) FROM event").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	write(0)
	if mapped() {
		t.Fatal("the database is mapped before any reader")
	}
	r, err := query.Open(path, query.Options{MmapSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	if err := r.QueryRowContext(context.Background(), "PRAGMA mmap_size").Scan(&size); err != nil || size != 64<<20 {
		t.Fatalf("mmap_size %d (%v), want %d", size, err, 64<<20)
	}
	if got := count(r); got != 500 {
		t.Fatalf("%d rows, want 500", got)
	}
	if !mapped() {
		t.Error("the readers did not map the database file")
	}
	write(500)
	if got := count(r); got != 1000 {
		t.Errorf("%d rows after the second write, want 1000", got)
	}
	r.Close()
	if mapped() {
		t.Error("the database is still mapped after the readers closed")
	}
	r, err = query.Open(path, query.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := count(r); got != 1000 {
		t.Errorf("%d rows without mmap, want 1000", got)
	}
	if mapped() {
		t.Error("the database is mapped by default")
	}
}
