package query_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/query"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
)

func TestComputeFunnel_Known(t *testing.T) {
	db := querytest.OpenReadOnly(t, querytest.Known(t))
	ctx := context.Background()
	steps := []string{"tutorial_start", "tutorial_end", "level_1"}
	// u1, u2, u3 and u5 start the tutorial; u2 ended it a minute before
	// starting it, u5 at the same time; u1 never reaches level 1.
	got, err := query.ComputeFunnel(ctx, db, nov("Game"), steps)
	if err != nil {
		t.Fatal(err)
	}
	querytest.EqualJSON(t, "funnel", got, `[{"step": "tutorial_start", "users": 4}, {"step": "tutorial_end", "users": 3}, {"step": "level_1", "users": 2}]`)

	windows := nov("Game")
	windows.Platform = "Windows"
	got, err = query.ComputeFunnel(ctx, db, windows, steps)
	if err != nil {
		t.Fatal(err)
	}
	querytest.EqualJSON(t, "funnel on Windows", got, `[{"step": "tutorial_start", "users": 1}, {"step": "tutorial_end", "users": 0}, {"step": "level_1", "users": 0}]`)

	// A step may repeat: u1 starts three times (1st, 2nd, 8th), u2 once
	// (8th), u3 once (3rd).
	got, err = query.ComputeFunnel(ctx, db, nov("Game"), []string{"start", "start", "start"})
	if err != nil {
		t.Fatal(err)
	}
	querytest.EqualJSON(t, "repeated step", got, `[{"step": "start", "users": 5}, {"step": "start", "users": 1}, {"step": "start", "users": 1}]`)

	for _, v := range []string{"", "a", "a,", "a,b,c,d,e,f,g,h,i"} {
		_, err := query.ParseSteps(v)
		var pe *query.ParamError
		if !errors.As(err, &pe) || pe.Param != "steps" {
			t.Errorf("ParseSteps(%q) = %v, want a ParamError for steps", v, err)
		}
	}
	if s, err := query.ParseSteps("a,b,c,d,e,f,g,h"); err != nil || len(s) != 8 {
		t.Errorf("8 steps: %v %v", s, err)
	}
}

func TestComputeValue_Known(t *testing.T) {
	db := querytest.OpenReadOnly(t, querytest.Known(t))
	ctx := context.Background()
	f := nov("Game")
	f.EventType = "level_end"
	got, err := query.ComputeValue(ctx, db, f, "score")
	if err != nil {
		t.Fatal(err)
	}
	const none = `"avg": null, "p50": null, "p95": null, "min": null, "max": null`
	querytest.EqualJSON(t, "score", got, `[
  {"day": "2026-11-01", "count": 1, "skipped": 0, "avg": 20, "p50": 20, "p95": 20, "min": 20, "max": 20},
  {"day": "2026-11-02", "count": 2, "skipped": 0, "avg": 20, "p50": 20, "p95": 29, "min": 10, "max": 30},
  {"day": "2026-11-03", "count": 0, "skipped": 0, `+none+`},
  {"day": "2026-11-04", "count": 0, "skipped": 0, `+none+`},
  {"day": "2026-11-05", "count": 0, "skipped": 1, `+none+`},
  {"day": "2026-11-06", "count": 0, "skipped": 0, `+none+`},
  {"day": "2026-11-07", "count": 0, "skipped": 0, `+none+`},
  {"day": "2026-11-08", "count": 0, "skipped": 1, `+none+`},
  {"day": "2026-11-09", "count": 0, "skipped": 0, `+none+`},
  {"day": "2026-11-10", "count": 1, "skipped": 0, "avg": 40.5, "p50": 40.5, "p95": 40.5, "min": 40.5, "max": 40.5}]`)

	got, err = query.ComputeValue(ctx, db, f, "stats.time")
	if err != nil {
		t.Fatal(err)
	}
	querytest.EqualJSON(t, "stats.time on the 2nd", got[1], `{"day": "2026-11-02", "count": 2, "skipped": 0, "avg": 6.5, "p50": 6.5, "p95": 7.4, "min": 5.5, "max": 7.5}`)
	skipped := int64(0)
	for _, d := range got {
		skipped += d.Skipped
	}
	if skipped != 4 {
		t.Errorf("stats.time skipped %d events, want 4", skipped)
	}

	for _, tc := range []struct{ eventType, field, param string }{
		{"", "score", "event_type"},
		{"level_end", "", "field"},
		{"level_end", "a..b", "field"},
		{"level_end", `a"]'`, "field"},
		{"level_end", "$.a", "field"},
	} {
		f := nov("Game")
		f.EventType = tc.eventType
		_, err := query.ComputeValue(ctx, db, f, tc.field)
		var pe *query.ParamError
		if !errors.As(err, &pe) || pe.Param != tc.param {
			t.Errorf("event_type %q field %q: got %v, want a ParamError for %s", tc.eventType, tc.field, err, tc.param)
		}
	}
}

func TestComputeSeries_Known(t *testing.T) {
	db := querytest.OpenReadOnly(t, querytest.Known(t))
	got, err := query.ComputeSeries(context.Background(), db, nov("Game"), "version")
	if err != nil {
		t.Fatal(err)
	}
	querytest.EqualJSON(t, "versions", got, `{"by": "version",
 "days": ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05", "2026-11-06", "2026-11-07", "2026-11-08", "2026-11-09", "2026-11-10"],
 "series": [{"name": "1.0", "values": [2, 1, 1, 0, 0, 0, 0, 2, 0, 0]}, {"name": "1.1", "values": [0, 1, 1, 0, 1, 0, 0, 0, 0, 1]}]}`)
	got, err = query.ComputeSeries(context.Background(), db, nov("Game"), "event_type")
	if err != nil {
		t.Fatal(err)
	}
	querytest.EqualJSON(t, "event types", got.Series[:2], `[{"name": "start", "values": [1, 1, 1, 0, 1, 0, 0, 2, 0, 1]}, {"name": "level_end", "values": [1, 2, 0, 0, 1, 0, 0, 1, 0, 1]}]`)
	if _, err := query.ComputeSeries(context.Background(), db, nov("Game"), "user_id"); err == nil {
		t.Error("by=user_id accepted")
	}
}

func TestRecentAndApplications_Known(t *testing.T) {
	db := querytest.OpenReadOnly(t, querytest.Known(t))
	ctx := context.Background()
	got, err := query.Recent(ctx, db, "", 3)
	if err != nil {
		t.Fatal(err)
	}
	querytest.EqualJSON(t, "recent", got, `[
 {"id": 28, "event_type": "level_end", "application": "Game", "version": "1.1", "platform": "Android", "user_id": "u4", "session_id": "s9", "value": {"score": 40.5}, "time": "2026-11-10 23:59:59.000000"},
 {"id": 27, "event_type": "start", "application": "Game", "version": "1.1", "platform": "Android", "user_id": "u4", "session_id": "s9", "value": {}, "time": "2026-11-10 23:59:00.000000"},
 {"id": 26, "event_type": "level_end", "application": "Game", "version": "1.0", "platform": "Linux", "user_id": "u1", "session_id": "s3", "value": {"score": "high"}, "time": "2026-11-08 12:00:30.000000"}]`)
	got, err = query.Recent(ctx, db, "Other", 50)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].ID != 21 || got[2].ID != 1 {
		t.Errorf("recent of Other: %+v", got)
	}
	apps, err := query.Applications(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	querytest.EqualJSON(t, "applications", apps, `[
 {"application": "Game", "first_day": "2026-10-06", "last_day": "2026-11-10", "events": 25},
 {"application": "Other", "first_day": "2026-10-01", "last_day": "2026-11-04", "events": 3}]`)
	for _, v := range []string{"0", "-1", "1001", "x", "1e3"} {
		if _, err := query.ParseLimit(v); err == nil {
			t.Errorf("limit %q accepted", v)
		}
	}
}

// TestComputeStats_Series: the breakdowns over time that ComputeStats adds
// from its one pass equal ComputeSeries's own queries, filters included.
func TestComputeStats_Series(t *testing.T) {
	db := querytest.OpenReadOnly(t, querytest.Known(t))
	ctx := context.Background()
	linux := nov("Game")
	linux.Platform = "Linux"
	for _, f := range []query.Filter{nov("Game"), linux} {
		st, err := query.ComputeStats(ctx, db, f, day("2026-11-10"), "event_type", "version", "platform")
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Series) != 3 {
			t.Fatalf("%d series", len(st.Series))
		}
		for _, got := range st.Series {
			want, err := query.ComputeSeries(ctx, db, f, got.By)
			if err != nil {
				t.Fatal(err)
			}
			wantJSON, _ := json.Marshal(want)
			querytest.EqualJSON(t, "series by "+got.By, got, string(wantJSON))
		}
	}
	if _, err := query.ComputeStats(ctx, db, nov("Game"), day("2026-11-10"), "user_id"); err == nil {
		t.Error("series by user_id accepted")
	}
}

// TestComputeValue_Extremes: numbers too large for a double are skipped;
// the average of the largest doubles does not overflow.
func TestComputeValue_Extremes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "extremes.db")
	at := day("2026-11-02").Add(time.Hour)
	var events []shard.Event
	for _, v := range []string{`{"x":1e99999}`, `{"x":-1e99999}`, `{"x":1.7e308}`, `{"x":1.7e308}`, `{"x":true}`, `{"x":null}`, `{"x":[1]}`, `{"x":"3"}`} {
		events = append(events, shard.Event{Time: at, Application: "A", EventType: "e", Version: "1", Platform: "p", UserID: "u", SessionID: "s", Value: v})
	}
	querytest.Write(t, path, events)
	f := query.Filter{Application: "A", EventType: "e", Since: day("2026-11-02"), Until: day("2026-11-02")}
	got, err := query.ComputeValue(context.Background(), querytest.OpenReadOnly(t, path), f, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := json.Marshal(got); err != nil {
		t.Fatalf("answer is no JSON: %v", err)
	}
	if got[0].Count != 2 || got[0].Skipped != 6 || *got[0].Avg != 1.7e308 || *got[0].Max != 1.7e308 {
		t.Errorf("got %+v", got[0])
	}
}
