package shard_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
)

func userEvents(n int, user, app string, at time.Time) []shard.Event {
	out := make([]shard.Event, n)
	for i := range out {
		out[i] = shard.Event{EventType: "t", Application: app, Version: "1", Platform: "p", UserID: user,
			SessionID: "s", Value: fmt.Sprintf(`{"i":%d}`, i), Time: at}
	}
	return out
}

func count(tb testing.TB, path, where string, args ...any) int {
	tb.Helper()
	var n int
	if err := sqlDB(tb, path).QueryRow("SELECT count(*) FROM "+shard.ViewAll+" WHERE "+where, args...).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestDB_Erase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	db := openDB(t, path, shard.Options{})
	now := time.Now()
	for _, ev := range [][]shard.Event{userEvents(3000, "gone", "A", now), userEvents(50, "gone", "B", now), userEvents(70, "kept", "A", now)} {
		if err := db.Write(0, ev); err != nil {
			t.Fatal(err)
		}
	}
	n, err := db.Erase(context.Background(), "gone", "A")
	if err != nil || n != 3000 {
		t.Fatalf("erase of application A: %d, %v; want 3000", n, err)
	}
	if got := count(t, path, "user_id = 'gone' AND application = 'B'"); got != 50 {
		t.Errorf("application B rows: %d, want 50 untouched", got)
	}
	n, err = db.Erase(context.Background(), "gone", "")
	if err != nil || n != 50 {
		t.Fatalf("erase of every application: %d, %v; want 50", n, err)
	}
	if n, err = db.Erase(context.Background(), "gone", ""); err != nil || n != 0 {
		t.Errorf("again: %d, %v; want 0", n, err)
	}
	if got := count(t, path, "user_id = 'kept'"); got != 70 {
		t.Errorf("other user: %d rows, want 70", got)
	}
	if st := db.Stats(); st.RowsErased != 3050 {
		t.Errorf("RowsErased: %d, want 3050", st.RowsErased)
	}
}

func TestDB_Prune(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	db := openDB(t, path, shard.Options{})
	old := time.Date(2020, 3, 1, 0, 0, 0, 0, time.UTC)
	if err := db.Write(0, userEvents(5000, "u", "A", old)); err != nil {
		t.Fatal(err)
	}
	if err := db.Write(0, userEvents(10, "u", "A", time.Now())); err != nil {
		t.Fatal(err)
	}
	n, err := db.Prune(context.Background(), time.Now().AddDate(0, 0, -30))
	if err != nil || n != 5000 {
		t.Fatalf("prune: %d, %v; want 5000", n, err)
	}
	if got := count(t, path, "1"); got != 10 {
		t.Errorf("rows left: %d, want the 10 recent ones", got)
	}
	if n, _ := db.Prune(context.Background(), time.Now().AddDate(0, 0, -30)); n != 0 {
		t.Errorf("again: %d, want 0", n)
	}
	if st := db.Stats(); st.RowsPruned != 5000 {
		t.Errorf("RowsPruned: %d, want 5000", st.RowsPruned)
	}
}

func TestDB_EraseEventType(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	db := openDB(t, path, shard.Options{EraseEventType: "delete_my_data"})
	now := time.Now()
	db.Write(0, userEvents(100, "u", "A", now))
	db.Write(0, userEvents(5, "u", "B", now))
	req := userEvents(1, "u", "A", now)
	req[0].EventType = "delete_my_data"
	if err := db.Write(0, req); err != nil {
		t.Fatal(err)
	}
	// The erasure runs after the commit; a later write goes after it.
	db.Write(0, userEvents(2, "u", "A", now))
	deadline := time.Now().Add(10 * time.Second)
	for count(t, path, "user_id = 'u' AND application = 'A'") != 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := count(t, path, "user_id = 'u' AND application = 'A' AND event_type = 't'"); got != 2 {
		t.Errorf("application A: %d ordinary rows left, want the 2 written after the request", got)
	}
	if got := count(t, path, "event_type = 'delete_my_data'"); got != 1 {
		t.Errorf("the request event itself: %d, want 1 (kept)", got)
	}
	if got := count(t, path, "application = 'B'"); got != 5 {
		t.Errorf("application B: %d, want 5 untouched", got)
	}
}

// TestDB_EraseEventType_Resumed: an erasure whose request was committed
// but whose deletion never ran (the process stopped or crashed between the
// two) is done at the next Open, for the newest request of each player;
// players whose erasure finished, and rows written after a request, stay.
func TestDB_EraseEventType_Resumed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	now := time.Now()
	request := func(user, app string) []shard.Event {
		ev := userEvents(1, user, app, now)
		ev[0].EventType = "delete_my_data"
		return ev
	}
	// Written without ERASE_EVENT_TYPE: the requests are committed, their
	// deletions never run, as after a crash right after the commit.
	db := openDB(t, path, shard.Options{})
	for _, w := range [][]shard.Event{
		userEvents(3000, "u", "A", now), request("u", "A"), userEvents(4, "u", "A", now),
		userEvents(20, "v", "A", now), request("v", "A"), userEvents(30, "v", "A", now), request("v", "A"),
		request("done", "A"), userEvents(7, "done", "A", now),
		userEvents(5, "u", "B", now), userEvents(6, "bystander", "A", now),
	} {
		if err := db.Write(0, w); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openDB(t, path, shard.Options{EraseEventType: "delete_my_data"})
	deadline := time.Now().Add(10 * time.Second)
	for count(t, path, "user_id IN ('u', 'v') AND application = 'A'") != 6 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range []struct {
		where string
		want  int
	}{
		{"user_id = 'u' AND application = 'A' AND event_type = 't'", 4}, // written after the request
		{"user_id = 'u' AND application = 'A' AND event_type = 'delete_my_data'", 1},
		{"user_id = 'v' AND application = 'A'", 1}, // the newest request alone: the older one and 50 rows went
		{"user_id = 'done' AND application = 'A'", 8},
		{"user_id = 'u' AND application = 'B'", 5},
		{"user_id = 'bystander'", 6},
	} {
		if got := count(t, path, c.where); got != c.want {
			t.Errorf("%s: %d rows, want %d", c.where, got, c.want)
		}
	}
	if got := db.Stats().RowsErased; got != 3000+51 {
		t.Errorf("RowsErased %d, want %d", got, 3000+51)
	}
}

func TestDB_Erase_Closed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	db := openDB(t, path, shard.Options{})
	db.Close()
	if _, err := db.Erase(context.Background(), "u", ""); err == nil {
		t.Error("erase on a closed database: no error")
	}
}

// TestDB_Erase_StagingTable: a table listed in EventTables (a staging table
// that holds rows before they reach event) loses the user's rows too.
func TestDB_Erase_StagingTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	db := openDB(t, path, shard.Options{})
	if _, err := sqlDB(t, path).Exec(`CREATE TABLE event_staging_test (user_id TEXT, application TEXT, time TEXT)`); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlDB(t, path).Exec(`INSERT INTO event_staging_test VALUES ('gone','A','2026-01-01'), ('gone','B','2026-01-01'), ('kept','A','2026-01-01')`); err != nil {
		t.Fatal(err)
	}
	old := shard.EventTables
	shard.EventTables = append(append([]string(nil), old...), "event_staging_test", "no_such_table")
	t.Cleanup(func() { shard.EventTables = old })
	db.Write(0, userEvents(10, "gone", "A", time.Now()))
	n, err := db.Erase(context.Background(), "gone", "A")
	if err != nil || n != 11 {
		t.Fatalf("erase: %d, %v; want 10 from event and 1 from staging", n, err)
	}
	var left int
	sqlDB(t, path).QueryRow("SELECT count(*) FROM event_staging_test").Scan(&left)
	if left != 2 {
		t.Errorf("staging: %d rows left, want 2 (application B, other user)", left)
	}
}

// TestDB_Erase_Ring: an erasure deletes a player's staged events and the
// stale copies the ring keeps of their merged ones, and counts each event
// once; retention (Prune, PruneThrough) deletes stale copies too.
func TestDB_Erase_Ring(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	db := openDB(t, path, shard.Options{MergeInterval: time.Hour})
	old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	now := time.Now()
	for _, ev := range [][]shard.Event{userEvents(30, "gone", "A", now), userEvents(20, "kept", "A", now), userEvents(10, "old", "A", old)} {
		if err := db.Write(0, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Merge(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Staged: 5 more of gone's and 4 of kept's; merged: 60, whose copies
	// the ring keeps.
	for _, ev := range [][]shard.Event{userEvents(5, "gone", "A", now), userEvents(4, "kept", "A", now)} {
		if err := db.Write(0, ev); err != nil {
			t.Fatal(err)
		}
	}
	s := sqlDB(t, path)
	ring := func(where string) int {
		t.Helper()
		var n int
		if err := s.QueryRow("SELECT count(*) FROM " + shard.StagingTable + " WHERE " + where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := ring("user_id = 'gone'"); n != 35 {
		t.Fatalf("the ring holds %d rows of gone, want 35 (30 stale copies, 5 staged)", n)
	}
	n, err := db.Erase(context.Background(), "gone", "")
	if err != nil || n != 35 {
		t.Fatalf("erase: %d, %v; want 35", n, err)
	}
	if n := ring("user_id = 'gone'"); n != 0 {
		t.Errorf("the ring still holds %d rows of gone", n)
	}
	if got := count(t, path, "user_id = 'kept'"); got != 24 {
		t.Errorf("kept: %d rows in event_all, want 24", got)
	}
	n, err = db.PruneThrough(context.Background(), now.Add(-time.Hour), 1000)
	if err != nil || n != 10 {
		t.Fatalf("prune through: %d, %v; want 10", n, err)
	}
	if n := ring("user_id = 'old'"); n != 0 {
		t.Errorf("the ring still holds %d stale copies of pruned rows", n)
	}
	if got := count(t, path, "TRUE"); got != 24 {
		t.Errorf("event_all: %d rows, want 24", got)
	}
	if st := db.Stats(); st.RowsErased != 35 || st.RowsPruned != 10 {
		t.Errorf("RowsErased %d, RowsPruned %d; want 35, 10", st.RowsErased, st.RowsPruned)
	}
}
