package query_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
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
