package query_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/query"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

// passingQuerier is the read-only pool with a summary pass slipped in
// before the tail piece of the stats' activity: the writer stores a few
// new events on the range's first day, merges them and summarises
// everything, so the tail piece reads a watermark above the day pieces'
// (read before it). It does that before each of the first `passes` tail
// pieces, and counts the pieces and the raw reads of the activity.
type passingQuerier struct {
	*sql.DB
	t      *testing.T
	w      *shard.DB
	at     time.Time
	passes int

	mu                    sync.Mutex
	days, tails, raw, did int
	written               []shard.Event
}

func (q *passingQuerier) QueryContext(ctx context.Context, text string, args ...any) (*sql.Rows, error) {
	q.mu.Lock()
	switch {
	case strings.HasPrefix(text, "SELECT built_id") && strings.Contains(text, "FROM stats_activity") && !strings.Contains(text, "octet_length"):
		// A day piece (packed fast; the random versions' tabs make each
		// read again packed safely, not counted).
		q.days++
	case strings.HasPrefix(text, "SELECT built_id") && strings.Contains(text, "FROM event NOT INDEXED"):
		q.tails++
		if q.did < q.passes {
			q.did++
			q.pass()
		}
	case strings.Contains(text, "FROM event WHERE") && strings.Contains(text, "GROUP BY session_id, user_id"):
		q.raw++
	}
	q.mu.Unlock()
	return q.DB.QueryContext(ctx, text, args...)
}

// pass writes two events of a new player on the first day of the range,
// merges and summarises: the summaries' watermark moves up past them.
func (q *passingQuerier) pass() {
	ctx := context.Background()
	var before int64
	if err := q.DB.QueryRow("SELECT built_id FROM stats_state").Scan(&before); err != nil {
		q.t.Error(err)
		return
	}
	user := fmt.Sprintf("late-%d", q.did)
	ev := []shard.Event{
		{Time: q.at, Application: "A", UserID: user, SessionID: user, EventType: "start", Version: "1", Platform: "Web", Value: "{}"},
		{Time: q.at.Add(90 * time.Second), Application: "A", UserID: user, SessionID: user, EventType: "end", Version: "1", Platform: "Web", Value: "{}"},
	}
	if err := q.w.Write(0, ev); err != nil {
		q.t.Error(err)
		return
	}
	if err := q.w.Merge(ctx); err != nil {
		q.t.Error(err)
	}
	if err := q.w.Summarize(ctx); err != nil {
		q.t.Error(err)
	}
	var after int64
	if err := q.DB.QueryRow("SELECT built_id FROM stats_state").Scan(&after); err != nil || after <= before {
		q.t.Errorf("a pass left the watermark at %d (was %d): %v", after, before, err)
	}
	q.written = append(q.written, ev...)
}

// TestComputeStats_WatermarkMoves: when a summary pass moves the watermark
// between the stats' pieces (the day pieces read below it, the tail above
// it), the pieces are read again; when it moves on each of the three
// tries, the range is read raw. Either way the answer is the definitions'
// over every row (a piece left from before the pass would miss the new
// player: neither the old day piece nor the new tail holds its events).
func TestComputeStats_WatermarkMoves(t *testing.T) {
	for _, tc := range []struct {
		passes           int
		days, tails, raw int
	}{
		{passes: 1, days: 2 * 21, tails: 2, raw: 0},
		{passes: 3, days: 3 * 21, tails: 3, raw: 1},
	} {
		t.Run(fmt.Sprintf("%d passes", tc.passes), func(t *testing.T) {
			events, path := randomDataset(t, true)
			f := randomFilters[0] // A, 21 days
			today := day("2026-10-28")
			w := shardtest.Open(t, path, shard.Options{SummaryInterval: time.Hour, SummaryRows: 1 << 30})
			q := &passingQuerier{DB: querytest.OpenReadOnly(t, path), t: t, w: w, at: f.Since.Add(12 * time.Hour), passes: tc.passes}
			if !querytest.Summarised(t, q.DB) {
				t.Fatal("the summaries must be used")
			}
			got, err := query.ComputeStats(context.Background(), q, f, today)
			if err != nil {
				t.Fatal(err)
			}
			if q.did != tc.passes || q.days != tc.days || q.tails != tc.tails || q.raw != tc.raw {
				t.Errorf("%d passes, %d day pieces, %d tail pieces, %d raw reads; want %d, %d, %d, %d",
					q.did, q.days, q.tails, q.raw, tc.passes, tc.days, tc.tails, tc.raw)
			}
			querytest.EqualJSON(t, "stats", got, string(naiveStats(append(events, q.written...), f, today)))
			if got.Days[0].NewUsers < int64(tc.passes) {
				t.Errorf("the first day has %d new users; want the %d written during the read at least", got.Days[0].NewUsers, tc.passes)
			}
		})
	}
}
