package query_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/query"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
)

// naiveFunnel is the funnel by its definition, over events in memory: for
// each user, step k is the earliest row of its type in the range at or
// after the row of step k-1, each row used once.
func naiveFunnel(events []shard.Event, f query.Filter, steps []string) []query.FunnelStep {
	byUser := map[string][]shard.Event{}
	for _, e := range events {
		d := e.Time.Format(query.DayFormat)
		if e.Application == f.Application && d >= f.Since.Format(query.DayFormat) && d <= f.Until.Format(query.DayFormat) &&
			(f.Version == "" || e.Version == f.Version) && (f.Platform == "" || e.Platform == f.Platform) {
			byUser[e.UserID] = append(byUser[e.UserID], e)
		}
	}
	out := make([]query.FunnelStep, len(steps))
	for i, s := range steps {
		out[i].Step = s
	}
	for _, rows := range byUser {
		sort.SliceStable(rows, func(i, j int) bool { return rows[i].Time.Before(rows[j].Time) })
		used := make([]bool, len(rows))
		var at time.Time
		for k, s := range steps {
			found := -1
			for i, e := range rows {
				if !used[i] && e.EventType == s && !e.Time.Before(at) {
					found = i
					break
				}
			}
			if found < 0 {
				break
			}
			used[found], at = true, rows[found].Time
			out[k].Users++
		}
	}
	return out
}

// sessionsDataset writes sessions of random event types (so a later step's
// type often comes first in a session, and a session's group of a step's
// type often holds the time the step before was done at), several events
// at the same second, sessions over midnight, two versions within a
// session, in time order as a server writes them.
func sessionsDataset(t *testing.T, seed uint64) ([]shard.Event, string) {
	rng := rand.New(rand.NewPCG(seed, 21))
	start := day("2026-10-01")
	types := []string{"a", "b", "c", "d", "e"}
	var events []shard.Event
	for s := 0; s < 400; s++ {
		u := rng.IntN(50)
		at := start.Add(time.Duration(rng.IntN(12*86400)) * time.Second)
		if rng.IntN(8) == 0 {
			// Over midnight.
			at = start.AddDate(0, 0, rng.IntN(12)).Add(-time.Duration(rng.IntN(300)) * time.Second)
		}
		for range 1 + rng.IntN(25) {
			events = append(events, shard.Event{
				Time:        at,
				Application: []string{"A", "B"}[u%2],
				UserID:      sessionUser(u),
				SessionID:   fmt.Sprintf("s%d", s),
				EventType:   types[min(int(rng.ExpFloat64()*1.5), len(types)-1)],
				Version:     []string{"1", "2"}[rng.IntN(2)],
				Platform:    []string{"Linux", "Web"}[u%3%2],
				Value:       "{}",
			})
			at = at.Add(time.Duration(rng.IntN(4)) * 20 * time.Second)
		}
	}
	// z does b, then a (so never b after a until a row above the
	// watermark says otherwise: TestComputeFunnel_SummariesTail).
	for i, et := range []string{"b", "a"} {
		events = append(events, shard.Event{Time: day("2026-10-05").Add(time.Duration(10+i) * time.Hour), Application: "A",
			UserID: "z", SessionID: "z", EventType: et, Version: "1", Platform: "Linux", Value: "{}"})
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].Time.Before(events[j].Time) })
	path := filepath.Join(t.TempDir(), "sessions.db")
	querytest.Write(t, path, events)
	return events, path
}

// sessionUser is the id of user u: some hold a tab and a newline, so some
// pieces come packed safely.
func sessionUser(u int) string {
	if u%5 == 0 {
		return fmt.Sprintf("u\t%d\n", u)
	}
	return fmt.Sprintf("u%d", u)
}

var sessionFilters = []query.Filter{
	{Application: "A", Since: day("2026-10-01"), Until: day("2026-10-12")},
	{Application: "B", Since: day("2026-10-03"), Until: day("2026-10-09")},
	{Application: "A", Since: day("2026-10-02"), Until: day("2026-10-11"), Platform: "Web"},
	{Application: "B", Since: day("2026-10-01"), Until: day("2026-10-12"), Version: "2"},
}

var sessionSteps = [][]string{{"a", "b", "c"}, {"b", "a"}, {"a", "b", "c", "d", "e"}, {"c", "d", "b"}, {"e", "a"}}

// TestComputeFunnel_Summaries checks the funnel from the summary groups
// against its definition and the raw rows, on sessions whose groups often
// leave a step's time open: the raw rows of some users' days must be read
// (blocked days), and a repeated step must take the raw path.
func TestComputeFunnel_Summaries(t *testing.T) {
	for seed := range uint64(3) {
		events, path := sessionsDataset(t, seed)
		sum, raw := querytest.OpenReadOnly(t, path), querytest.OpenReadOnly(t, querytest.WithoutSummaries(t, path))
		before := query.FunnelCountsNow()
		n := 0
		for _, f := range sessionFilters {
			for _, steps := range sessionSteps {
				what := fmt.Sprintf("seed %d: funnel %q %+v", seed, steps, f)
				got := sameFunnel(t, what, sum, raw, f, steps)
				querytest.EqualJSON(t, what+" (definition)", got, string(mustJSON(t, naiveFunnel(events, f, steps))))
				n++
			}
		}
		c := query.FunnelCountsNow().Sub(before)
		if c.Summaries != int64(n) || c.Disorder != 0 || c.Moved != 0 {
			t.Errorf("seed %d: %+v; want %d funnels from the summaries", seed, c, n)
		}
		if c.BlockedDays == 0 {
			t.Errorf("seed %d: %+v; want days whose raw rows were read", seed, c)
		}
		// A repeated step: the raw path.
		before = query.FunnelCountsNow()
		for _, f := range sessionFilters {
			steps := []string{"a", "b", "a"}
			got := sameFunnel(t, fmt.Sprintf("seed %d: funnel %q %+v", seed, steps, f), sum, raw, f, steps)
			querytest.EqualJSON(t, "repeated step (definition)", got, string(mustJSON(t, naiveFunnel(events, f, steps))))
		}
		if c := query.FunnelCountsNow().Sub(before); c.Summaries != 0 {
			t.Errorf("seed %d: a repeated step answered from the summaries: %+v", seed, c)
		}
	}
}

// TestComputeFunnel_SummariesTail checks the summaries' funnel with rows
// above the watermark: in time order after the summarised ones (answered
// from the summaries), then with a row dated before them (the raw path),
// and with the watermark moving under the pieces (read again, then raw).
func TestComputeFunnel_SummariesTail(t *testing.T) {
	events, path := sessionsDataset(t, 9)
	w, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	add := func(e shard.Event) {
		t.Helper()
		_, err := w.Exec(`INSERT INTO event (event_type, application, version, platform, user_id, session_id, value, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			e.EventType, e.Application, e.Version, e.Platform, e.UserID, e.SessionID, e.Value, e.Time.Format(shard.TimeFormat))
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
	}
	// Every user of A does every step again on the last day, after all
	// their summarised rows.
	late := day("2026-10-13").Add(time.Hour)
	for u := 0; u < 50; u += 2 {
		for i, et := range []string{"e", "d", "c", "b", "a"} {
			add(shard.Event{Time: late.Add(time.Duration(i) * time.Second), Application: "A", UserID: sessionUser(u),
				SessionID: "late", EventType: et, Version: "1", Platform: []string{"Linux", "Web"}[u%3%2], Value: "{}"})
		}
	}
	check := func(what string, stepLists [][]string, want query.FunnelCounts) {
		t.Helper()
		sum := querytest.OpenReadOnly(t, path)
		before := query.FunnelCountsNow()
		for _, f := range []query.Filter{{Application: "A", Since: day("2026-10-01"), Until: day("2026-10-13")}} {
			for _, steps := range stepLists {
				got, err := query.ComputeFunnel(context.Background(), sum, f, steps)
				if err != nil {
					t.Fatal(err)
				}
				querytest.EqualJSON(t, fmt.Sprintf("%s: funnel %q %+v", what, steps, f), got, string(mustJSON(t, naiveFunnel(events, f, steps))))
			}
		}
		c := query.FunnelCountsNow().Sub(before)
		c.BlockedDays, c.BlockedUsers = 0, 0
		if c != want {
			t.Errorf("%s: %+v, want %+v", what, c, want)
		}
	}
	check("tail in order", sessionSteps, query.FunnelCounts{Summaries: int64(len(sessionSteps))})

	// The watermark moves after each piece read: three tries, then raw.
	query.SetFunnelReadHook(t, func() {
		if _, err := w.Exec("UPDATE stats_state SET built_id = built_id + 1"); err != nil {
			t.Error(err)
		}
	})
	check("watermark moving", sessionSteps, query.FunnelCounts{Moved: 3 * int64(len(sessionSteps))})
	query.SetFunnelReadHook(t, nil)
	if _, err := w.Exec("UPDATE stats_state SET built_id = (SELECT max(id) FROM event) - 125"); err != nil {
		t.Fatal(err)
	}

	// A row above the watermark dated before its user's summarised
	// steps: z's a before their b.
	add(shard.Event{Time: day("2026-10-01").Add(time.Minute), Application: "A", UserID: "z",
		SessionID: "early", EventType: "a", Version: "1", Platform: "Linux", Value: "{}"})
	check("tail before", [][]string{{"a", "b"}}, query.FunnelCounts{Disorder: 1})
}
