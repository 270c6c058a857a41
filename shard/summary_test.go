package shard_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

// randomEvents are n events of a few applications, users, sessions, types,
// versions and platforms at random times over 20 days, in random order.
func randomEvents(rng *rand.Rand, n int) []shard.Event {
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	out := make([]shard.Event, n)
	for i := range out {
		u := rng.IntN(30)
		out[i] = shard.Event{
			Time:        start.Add(time.Duration(rng.IntN(20*24*3600)) * time.Second),
			Application: []string{"A", "B"}[rng.IntN(2)],
			UserID:      fmt.Sprintf("u%d", u),
			SessionID:   fmt.Sprintf("s%d", rng.IntN(80)),
			EventType:   []string{"start", "level", "end", "forget"}[rng.IntN(4)],
			Version:     []string{"1", "2"}[rng.IntN(2)],
			Platform:    []string{"Linux", "Web"}[u%2],
			Value:       "{}",
		}
	}
	return out
}

// TestSummaries_EqualRaw writes random events through the writer (merged
// in small chunks), then erases users (with and without an application and
// through ERASE_EVENT_TYPE) and deletes old rows (retention); after each
// step the summary tables must equal what the raw rows give.
func TestSummaries_EqualRaw(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 3))
	path := filepath.Join(t.TempDir(), "events.db")
	db := openDB(t, path, shard.Options{MergeInterval: time.Hour, MergeMaxRows: 300, EraseEventType: "forget"})
	events := randomEvents(rng, 3000)
	for i := 0; i < len(events); i += 100 {
		if err := db.Write(i, events[i:i+100]); err != nil {
			t.Fatal(err)
		}
		if i%700 == 0 {
			if err := db.Merge(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx := context.Background()
	if err := db.Merge(ctx); err != nil {
		t.Fatal(err)
	}
	shardtest.CheckSummaries(t, path)

	if n, err := db.Erase(ctx, "u3", ""); err != nil || n == 0 {
		t.Fatalf("erase u3: %d, %v", n, err)
	}
	if n, err := db.Erase(ctx, "u4", "A"); err != nil || n == 0 {
		t.Fatalf("erase u4 of A: %d, %v", n, err)
	}
	shardtest.CheckSummaries(t, path)

	// Rows up to the middle of a day (as far as retention's walk in id
	// order goes through rows in random time order): groups and users keep
	// the rest.
	if n, err := db.Prune(ctx, time.Date(2026, 10, 6, 13, 0, 0, 0, time.UTC)); err != nil || n == 0 {
		t.Fatalf("prune: %d, %v", n, err)
	}
	if err := db.Merge(ctx); err != nil {
		t.Fatal(err)
	}
	shardtest.CheckSummaries(t, path)
}

// TestSummaries_Backfill opens a database whose rows the summaries never
// saw (written with merging off, as an old gocolytics or Pycolytics wrote
// them): the writer builds them in the background while taking events, and
// a run with merging off marks them unusable again.
func TestSummaries_Backfill(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 3))
	path := filepath.Join(t.TempDir(), "events.db")
	db := shard.New(path, shard.Options{MergeInterval: -1}, quietLogger())
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	if err := db.Write(0, randomEvents(rng, 5000)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = shard.New(path, shard.Options{}, quietLogger())
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if err := db.Write(i, randomEvents(rng, 50)); err != nil {
			t.Fatal(err)
		}
	}
	shardtest.WaitSummaries(t, path)
	if err := db.Merge(context.Background()); err != nil {
		t.Fatal(err)
	}
	shardtest.CheckSummaries(t, path)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// Merging off: rows go straight into event, so the state goes.
	db = shard.New(path, shard.Options{MergeInterval: -1}, quietLogger())
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	if err := db.Write(0, randomEvents(rng, 10)); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := sqlDB(t, path).QueryRow("SELECT count(*) FROM stats_state").Scan(&n); err != nil || n != 0 {
		t.Errorf("state rows with merging off: %d, %v; want 0", n, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	openDB(t, path, shard.Options{})
	shardtest.WaitSummaries(t, path)
	shardtest.CheckSummaries(t, path)
}
