package shard_test

import (
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openDB(tb testing.TB, path string, opts shard.Options) *shard.DB {
	tb.Helper()
	return shardtest.Open(tb, path, opts)
}

func sqlDB(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	return shardtest.SQL(tb, path)
}

func testEvent(i int) shard.Event { return shardtest.Event(i) }

func TestDB_Open_Schema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", "events.db")
	openDB(t, path, shard.Options{})
	db := sqlDB(t, path)
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode: got %q, %v; want wal", mode, err)
	}
	rows, err := db.Query("SELECT name, type, \"notnull\", pk FROM pragma_table_info('event') ORDER BY cid")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var name, typ string
		var notnull, pk int
		rows.Scan(&name, &typ, &notnull, &pk)
		got = append(got, fmt.Sprintf("%s %s %d %d", name, typ, notnull, pk))
	}
	want := []string{"event_type VARCHAR 1 0", "application VARCHAR 1 0", "version VARCHAR 1 0", "platform VARCHAR 1 0",
		"user_id VARCHAR 1 0", "session_id VARCHAR 1 0", "value JSON 1 0", "id INTEGER 1 1", "time DATETIME 1 0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("columns:\ngot  %v\nwant %v", got, want)
	}
	var idx []string
	rows, _ = db.Query("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='event' ORDER BY name")
	for rows.Next() {
		var n string
		rows.Scan(&n)
		idx = append(idx, n)
	}
	wantIdx := []string{"ix_event_application", "ix_event_event_type", "ix_event_platform", "ix_event_user_id", "ix_event_version"}
	if fmt.Sprint(idx) != fmt.Sprint(wantIdx) {
		t.Errorf("indexes: got %v, want %v", idx, wantIdx)
	}
}

func TestDB_Write(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	w := openDB(t, path, shard.Options{})
	evs := []shard.Event{testEvent(1), testEvent(2)}
	evs[1].Value = `{"s":"Ünïcödé \u0000","n":1e99999}`
	evs[1].EventType = "nul\x00byte"
	if err := w.Write(0, evs); err != nil {
		t.Fatal(err)
	}
	db := sqlDB(t, path)
	rows, err := db.Query("SELECT id, event_type, value, typeof(value), typeof(time) || ' ' || time FROM event_all ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var id int
		var et, v, typ, tm string
		rows.Scan(&id, &et, &v, &typ, &tm)
		got = append(got, fmt.Sprintf("%d|%q|%s|%s|%s", id, et, v, typ, tm))
	}
	want := []string{
		`1|"level_complete"|{"i":1}|text|text 2026-11-28 02:19:55.244281`,
		`2|"nul\x00byte"|{"s":"Ünïcödé \u0000","n":1e99999}|text|text 2026-11-28 02:19:55.244281`,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	if st := w.Stats(); st.EventsStored != 2 || st.Commits != 1 || st.QueuedEvents != 0 {
		t.Errorf("stats: got %+v", st)
	}
}

func TestDB_Write_LocalTime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	w := openDB(t, path, shard.Options{LocalTime: true})
	ev := testEvent(1)
	if err := w.Write(0, []shard.Event{ev}); err != nil {
		t.Fatal(err)
	}
	var tm string
	sqlDB(t, path).QueryRow("SELECT time || '' FROM event_all").Scan(&tm)
	if want := ev.Time.Local().Format(shard.TimeFormat); tm != want {
		t.Errorf("got %q, want %q", tm, want)
	}
}

// TestDB_Pycolytics appends to a database written by Pycolytics: its rows
// and schema stay as they were.
func TestDB_Pycolytics(t *testing.T) {
	src, err := os.ReadFile("testdata/pycolytics/pycolytics.db")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pycolytics.db")
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	dump := func() []string {
		db, _ := sql.Open("sqlite3", "file:"+path+"?mode=ro")
		defer db.Close()
		var out []string
		rows, err := db.Query("SELECT id, value, event_type, application, version, platform, user_id, session_id, time || '' FROM event ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id int
			var v, a, b, c, d, e, f, g string
			rows.Scan(&id, &v, &a, &b, &c, &d, &e, &f, &g)
			out = append(out, strings.Join([]string{fmt.Sprint(id), v, a, b, c, d, e, f, g}, "|"))
		}
		var schema string
		db.QueryRow("SELECT group_concat(sql, ';') FROM sqlite_master WHERE tbl_name = 'event'").Scan(&schema)
		return append(out, schema)
	}
	before := dump()
	if len(before) != 6 {
		t.Fatalf("fixture has %d rows, want 5", len(before)-1)
	}
	w := shard.New(path, shard.Options{}, quietLogger())
	if err := w.Open(); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(0, []shard.Event{testEvent(9)}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	after := dump()
	if len(after) != 7 {
		t.Fatalf("got %d rows, want 6", len(after)-1)
	}
	for i := 0; i < 5; i++ {
		if after[i] != before[i] {
			t.Errorf("row %d changed:\n%s\n%s", i+1, before[i], after[i])
		}
	}
	if after[6] != before[5] {
		t.Errorf("schema changed:\n%s\n%s", before[5], after[6])
	}
	if want := `6|{"i":9}|level_complete|My Game|1.0.3|Linux|7acafdde|session-9|2026-11-28 02:19:55.244281`; after[5] != want {
		t.Errorf("new row: got %q, want %q", after[5], want)
	}
}

func TestDB_Open_Refuses(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "notdb")
	os.WriteFile(notDB, []byte("this is not a database, just some text that is long enough to have a header......."), 0o644)

	newer := filepath.Join(dir, "newer.db")
	db := sqlDB(t, newer)
	db.Exec("CREATE TABLE event (x); PRAGMA user_version = 7")
	db.Close()

	other := filepath.Join(dir, "other.db")
	db = sqlDB(t, other)
	db.Exec("CREATE TABLE event (id INTEGER PRIMARY KEY, name TEXT)")
	db.Close()

	for _, tt := range []struct {
		name, path string
		want       error
	}{
		{"not a database", notDB, nil},
		{"newer schema", newer, shard.ErrUnknownSchema},
		{"other event table", other, shard.ErrUnknownSchema},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := os.ReadFile(tt.path)
			w := shard.New(tt.path, shard.Options{}, quietLogger())
			err := w.Open()
			if err == nil {
				w.Close()
				t.Fatal("opened; want an error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
			after, _ := os.ReadFile(tt.path)
			if string(before) != string(after) {
				t.Error("the file was changed")
			}
		})
	}
}

// TestDB_Write_Concurrent: every Write that returned nil has exactly its rows.
func TestDB_Write_Concurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	w := openDB(t, path, shard.Options{Shards: 4, MaxBatchEvents: 50})
	const writers, per = 16, 50
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				n := g*per + i
				evs := []shard.Event{testEvent(n), testEvent(n)}
				if err := w.Write(g, evs); err != nil {
					t.Errorf("write %d: %v", n, err)
				}
			}
		}(g)
	}
	// A reader during the writes sees consistent, growing counts.
	db := sqlDB(t, path)
	last := 0
	for i := 0; i < 20; i++ {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM event_all").Scan(&n); err != nil {
			t.Fatalf("read during writes: %v", err)
		}
		if n < last || n%2 != 0 {
			t.Fatalf("read %d rows after %d: a request was split or lost", n, last)
		}
		last = n
	}
	wg.Wait()
	rows, _ := db.Query("SELECT session_id, count(*) FROM event_all GROUP BY session_id")
	seen := 0
	for rows.Next() {
		var s string
		var c int
		rows.Scan(&s, &c)
		if c != 2 {
			t.Errorf("%s: %d rows, want 2", s, c)
		}
		seen++
	}
	if seen != writers*per {
		t.Errorf("got %d sessions, want %d", seen, writers*per)
	}
	if st := w.Stats(); st.EventsStored != 2*writers*per {
		t.Errorf("stats: %+v", st)
	}
}

// TestDB_Close_Drains: writes in flight when Close is called are committed
// or refused, never acknowledged and lost.
func TestDB_Close_Drains(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	w := shard.New(path, shard.Options{}, quietLogger())
	if err := w.Open(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]bool{}
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				ev := testEvent(g*100000 + i)
				err := w.Write(g, []shard.Event{ev})
				if errors.Is(err, shard.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("write: %v", err)
					return
				}
				mu.Lock()
				acked[ev.SessionID] = true
				mu.Unlock()
			}
		}(g)
	}
	time.Sleep(200 * time.Millisecond)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := w.Write(0, []shard.Event{testEvent(0)}); !errors.Is(err, shard.ErrClosed) {
		t.Errorf("write after close: got %v, want ErrClosed", err)
	}
	db := sqlDB(t, path)
	stored := map[string]bool{}
	rows, _ := db.Query("SELECT session_id FROM event")
	for rows.Next() {
		var s string
		rows.Scan(&s)
		stored[s] = true
	}
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged")
	}
	for s := range acked {
		if !stored[s] {
			t.Errorf("acknowledged %s is not stored", s)
		}
	}
	if len(stored) != len(acked) {
		t.Errorf("stored %d, acknowledged %d", len(stored), len(acked))
	}
}

// TestDB_Write_Busy: another process's lock delays writes within the busy
// timeout and fails them, with ErrBusy and nothing stored, past it.
func TestDB_Write_Busy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	w := openDB(t, path, shard.Options{BusyTimeout: 300 * time.Millisecond})
	other := sqlDB(t, path)
	lock := shardtest.HoldLock(t, path)
	err := w.Write(0, []shard.Event{testEvent(1)})
	if !errors.Is(err, shard.ErrBusy) {
		t.Errorf("got %v, want ErrBusy", err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Write(0, []shard.Event{testEvent(2)}) }()
	time.Sleep(100 * time.Millisecond)
	lock.Release(t)
	if err := <-done; err != nil {
		t.Errorf("write within the busy timeout: %v", err)
	}
	var sessions []string
	rows, _ := other.Query("SELECT session_id FROM event_all")
	for rows.Next() {
		var s string
		rows.Scan(&s)
		sessions = append(sessions, s)
	}
	if fmt.Sprint(sessions) != "[session-2]" {
		t.Errorf("got rows %v, want [session-2]", sessions)
	}
}

// TestDB_Write_WrapsSQLiteError: a failed commit's error wraps the sentinel
// and SQLite's own error, which errors.As finds with its code.
func TestDB_Write_WrapsSQLiteError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	w := openDB(t, path, shard.Options{BusyTimeout: 100 * time.Millisecond})
	lock := shardtest.HoldLock(t, path)
	defer lock.Release(t)
	err := w.Write(0, []shard.Event{testEvent(1)})
	if !errors.Is(err, shard.ErrBusy) {
		t.Errorf("got %v, want ErrBusy", err)
	}
	var se sqlite3.Error
	if !errors.As(err, &se) {
		t.Fatalf("errors.As(%v, &sqlite3.Error{}) = false, want true", err)
	}
	if se.Code != sqlite3.ErrBusy {
		t.Errorf("got SQLite code %v, want %v (SQLITE_BUSY)", se.Code, sqlite3.ErrBusy)
	}
}

// TestDB_Write_QuietWait: a request that finds the writer idle waits
// CommitQuietWait for company, so two requests of a quiet stretch, the
// second sent while the first waits, share one commit; with the wait off
// each gets its own.
func TestDB_Write_QuietWait(t *testing.T) {
	for _, tc := range []struct {
		wait    time.Duration
		commits uint64
	}{{time.Second, 1}, {-1, 2}} {
		t.Run(fmt.Sprint(tc.wait), func(t *testing.T) {
			w := openDB(t, filepath.Join(t.TempDir(), "events.db"), shard.Options{CommitQuietWait: tc.wait})
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = w.Write(i, []shard.Event{testEvent(i)})
				}()
				time.Sleep(200 * time.Millisecond)
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			if s := w.Stats(); s.Commits != tc.commits || s.EventsStored != 2 {
				t.Errorf("commits %d, events %d; want %d commits, 2 events", s.Commits, s.EventsStored, tc.commits)
			}
		})
	}
}
