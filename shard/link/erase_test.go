package link_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/link"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

// TestLink_Erase: an erasure sent over the link runs in the writer while
// writes go on over the same link; the counts come back, and the deleted
// rows show in the writer's counters seen through the link.
func TestLink_Erase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	db := shardtest.Open(t, path, shard.Options{})
	l, _ := startLink(t, db, link.Handlers{})
	gone := make([]shard.Event, 3000)
	for i := range gone {
		gone[i] = shardtest.Event(i)
		gone[i].UserID = "gone"
	}
	if err := l.Write(0, gone); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 100 {
			if err := l.Write(i, []shard.Event{shardtest.Event(10000 + i)}); err != nil {
				t.Errorf("write during erase: %v", err)
			}
		}
	})
	n, err := l.Erase(context.Background(), "gone", "")
	wg.Wait()
	if err != nil || n != 3000 {
		t.Fatalf("erase: %d, %v; want 3000", n, err)
	}
	var left, others int
	shardtest.SQL(t, path).QueryRow("SELECT count(*) FILTER (WHERE user_id = 'gone'), count(*) FILTER (WHERE user_id != 'gone') FROM event_all").Scan(&left, &others)
	if left != 0 || others != 100 {
		t.Errorf("after erase: %d rows of the user, %d others; want 0 and 100", left, others)
	}
	if n, err := l.Erase(context.Background(), "gone", ""); err != nil || n != 0 {
		t.Errorf("again: %d, %v; want 0", n, err)
	}
	if st := l.Stats(); st.RowsErased != 3000 {
		t.Errorf("RowsErased through the link: %d, want 3000", st.RowsErased)
	}
}
