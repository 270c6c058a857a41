package query_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard/query"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
)

func day(s string) time.Time {
	d, err := time.Parse(query.DayFormat, s)
	if err != nil {
		panic(err)
	}
	return d
}

func nov(application string) query.Filter {
	return query.Filter{Application: application, Since: day("2026-11-01"), Until: day("2026-11-10")}
}

// The figures below are worked out by hand from testdata/known/events.tsv.

const wantNovember = `{
 "summary": {"users": 6, "new_users": 5, "sessions": 10, "events": 23, "dau": 1, "wau": 4, "mau": 7, "median_session_seconds": 59.5},
 "days": [
  {"day": "2026-11-01", "users": 2, "new_users": 2, "sessions": 2, "events": 6},
  {"day": "2026-11-02", "users": 2, "new_users": 1, "sessions": 2, "events": 6},
  {"day": "2026-11-03", "users": 2, "new_users": 1, "sessions": 2, "events": 4},
  {"day": "2026-11-04", "users": 0, "new_users": 0, "sessions": 0, "events": 0},
  {"day": "2026-11-05", "users": 1, "new_users": 0, "sessions": 1, "events": 2},
  {"day": "2026-11-06", "users": 0, "new_users": 0, "sessions": 0, "events": 0},
  {"day": "2026-11-07", "users": 0, "new_users": 0, "sessions": 0, "events": 0},
  {"day": "2026-11-08", "users": 2, "new_users": 0, "sessions": 2, "events": 3},
  {"day": "2026-11-09", "users": 0, "new_users": 0, "sessions": 0, "events": 0},
  {"day": "2026-11-10", "users": 1, "new_users": 1, "sessions": 1, "events": 2}],
 "event_types": [
  {"event_type": "start", "events": 7, "users": 5},
  {"event_type": "level_end", "events": 6, "users": 5},
  {"event_type": "tutorial_end", "events": 4, "users": 4},
  {"event_type": "tutorial_start", "events": 4, "users": 4},
  {"event_type": "level_1", "events": 2, "users": 2}],
 "versions": [{"version": "1.0", "users": 3, "events": 14}, {"version": "1.1", "users": 3, "events": 9}],
 "platforms": [{"platform": "Linux", "users": 3, "events": 15}, {"platform": "Android", "users": 2, "events": 4}, {"platform": "Windows", "users": 1, "events": 4}],
 "retention": [
  {"cohort": "2026-11-01", "users": 2, "d1": 1, "d7": 2, "d30": null},
  {"cohort": "2026-11-02", "users": 1, "d1": 1, "d7": 0, "d30": null},
  {"cohort": "2026-11-03", "users": 1, "d1": 0, "d7": 0, "d30": null},
  {"cohort": "2026-11-04", "users": 0, "d1": 0, "d7": null, "d30": null},
  {"cohort": "2026-11-05", "users": 0, "d1": 0, "d7": null, "d30": null},
  {"cohort": "2026-11-06", "users": 0, "d1": 0, "d7": null, "d30": null},
  {"cohort": "2026-11-07", "users": 0, "d1": 0, "d7": null, "d30": null},
  {"cohort": "2026-11-08", "users": 0, "d1": 0, "d7": null, "d30": null},
  {"cohort": "2026-11-09", "users": 0, "d1": 0, "d7": null, "d30": null},
  {"cohort": "2026-11-10", "users": 1, "d1": null, "d7": null, "d30": null}]}`

const wantNovemberLinux = `{
 "summary": {"users": 3, "new_users": 3, "sessions": 6, "events": 15, "dau": 0, "wau": 1, "mau": 4, "median_session_seconds": 45},
 "days": [
  {"day": "2026-11-01", "users": 1, "new_users": 1, "sessions": 1, "events": 3},
  {"day": "2026-11-02", "users": 2, "new_users": 1, "sessions": 2, "events": 6},
  {"day": "2026-11-03", "users": 2, "new_users": 1, "sessions": 2, "events": 4},
  {"day": "2026-11-04", "users": 0, "new_users": 0, "sessions": 0, "events": 0},
  {"day": "2026-11-05", "users": 0, "new_users": 0, "sessions": 0, "events": 0},
  {"day": "2026-11-06", "users": 0, "new_users": 0, "sessions": 0, "events": 0},
  {"day": "2026-11-07", "users": 0, "new_users": 0, "sessions": 0, "events": 0},
  {"day": "2026-11-08", "users": 1, "new_users": 0, "sessions": 1, "events": 2},
  {"day": "2026-11-09", "users": 0, "new_users": 0, "sessions": 0, "events": 0},
  {"day": "2026-11-10", "users": 0, "new_users": 0, "sessions": 0, "events": 0}],
 "event_types": [
  {"event_type": "start", "events": 4, "users": 2},
  {"event_type": "level_end", "events": 3, "users": 2},
  {"event_type": "tutorial_end", "events": 3, "users": 3},
  {"event_type": "tutorial_start", "events": 3, "users": 3},
  {"event_type": "level_1", "events": 2, "users": 2}],
 "versions": [{"version": "1.0", "users": 2, "events": 10}, {"version": "1.1", "users": 1, "events": 5}],
 "platforms": [{"platform": "Linux", "users": 3, "events": 15}],
 "retention": [
  {"cohort": "2026-11-01", "users": 1, "d1": 1, "d7": 1, "d30": null},
  {"cohort": "2026-11-02", "users": 1, "d1": 1, "d7": 0, "d30": null},
  {"cohort": "2026-11-03", "users": 1, "d1": 0, "d7": 0, "d30": null},
  {"cohort": "2026-11-04", "users": 0, "d1": 0, "d7": null, "d30": null},
  {"cohort": "2026-11-05", "users": 0, "d1": 0, "d7": null, "d30": null},
  {"cohort": "2026-11-06", "users": 0, "d1": 0, "d7": null, "d30": null},
  {"cohort": "2026-11-07", "users": 0, "d1": 0, "d7": null, "d30": null},
  {"cohort": "2026-11-08", "users": 0, "d1": 0, "d7": null, "d30": null},
  {"cohort": "2026-11-09", "users": 0, "d1": 0, "d7": null, "d30": null},
  {"cohort": "2026-11-10", "users": 0, "d1": null, "d7": null, "d30": null}]}`

func TestComputeStats_Known(t *testing.T) {
	db := querytest.OpenReadOnly(t, querytest.Known(t))
	ctx := context.Background()

	got, err := query.ComputeStats(ctx, db, nov("Game"), day("2026-11-10"))
	if err != nil {
		t.Fatal(err)
	}
	querytest.EqualJSON(t, "November", got, wantNovember)

	linux := nov("Game")
	linux.Platform = "Linux"
	got, err = query.ComputeStats(ctx, db, linux, day("2026-11-10"))
	if err != nil {
		t.Fatal(err)
	}
	querytest.EqualJSON(t, "November, Linux", got, wantNovemberLinux)

	// Today is the 5th: retention of the 6th and later is not known yet.
	got, err = query.ComputeStats(ctx, db, nov("Game"), day("2026-11-05"))
	if err != nil {
		t.Fatal(err)
	}
	querytest.EqualJSON(t, "retention on the 5th", got.Retention[:6], `[
  {"cohort": "2026-11-01", "users": 2, "d1": 1, "d7": null, "d30": null},
  {"cohort": "2026-11-02", "users": 1, "d1": 1, "d7": null, "d30": null},
  {"cohort": "2026-11-03", "users": 1, "d1": 0, "d7": null, "d30": null},
  {"cohort": "2026-11-04", "users": 0, "d1": 0, "d7": null, "d30": null},
  {"cohort": "2026-11-05", "users": 0, "d1": null, "d7": null, "d30": null},
  {"cohort": "2026-11-06", "users": 0, "d1": null, "d7": null, "d30": null}]`)

	// From October: "old" joined on the 6th and came back 30 days later;
	// u1 and u5 played Other first, and are new in Game in November.
	oct := query.Filter{Application: "Game", Since: day("2026-10-01"), Until: day("2026-11-10")}
	got, err = query.ComputeStats(ctx, db, oct, day("2026-11-30"))
	if err != nil {
		t.Fatal(err)
	}
	querytest.EqualJSON(t, "October summary", got.Summary,
		`{"users": 7, "new_users": 7, "sessions": 12, "events": 25, "dau": 1, "wau": 4, "mau": 7, "median_session_seconds": 44.5}`)
	querytest.EqualJSON(t, "October 6th cohort", got.Retention[5], `{"cohort": "2026-10-06", "users": 1, "d1": 0, "d7": 0, "d30": 1}`)
	querytest.EqualJSON(t, "October 25th cohort", got.Retention[24], `{"cohort": "2026-10-25", "users": 1, "d1": 0, "d7": 0, "d30": null}`)
	if len(got.Days) != 41 || len(got.Retention) != 41 {
		t.Errorf("%d days, %d cohorts; want 41", len(got.Days), len(got.Retention))
	}

	// Other: u1 and u5, new on October 1st; u1 back on November 4th.
	other := query.Filter{Application: "Other", Since: day("2026-10-01"), Until: day("2026-11-04")}
	got, err = query.ComputeStats(ctx, db, other, day("2026-11-30"))
	if err != nil {
		t.Fatal(err)
	}
	querytest.EqualJSON(t, "Other summary", got.Summary,
		`{"users": 2, "new_users": 2, "sessions": 3, "events": 3, "dau": 1, "wau": 1, "mau": 1, "median_session_seconds": 0}`)
	querytest.EqualJSON(t, "Other cohort", got.Retention[0], `{"cohort": "2026-10-01", "users": 2, "d1": 0, "d7": 0, "d30": 0}`)
}

func TestComputeStats_BadFilter(t *testing.T) {
	db := querytest.OpenReadOnly(t, querytest.Known(t))
	for _, tc := range []struct {
		f     query.Filter
		param string
	}{
		{query.Filter{Since: day("2026-11-01"), Until: day("2026-11-02")}, "application"},
		{query.Filter{Application: "Game", Until: day("2026-11-02")}, "since"},
		{query.Filter{Application: "Game", Since: day("2026-11-02"), Until: day("2026-11-01")}, "until"},
		{query.Filter{Application: "Game", Since: day("2025-01-01"), Until: day("2026-02-05")}, "until"},
	} {
		_, err := query.ComputeStats(context.Background(), db, tc.f, day("2026-11-10"))
		var pe *query.ParamError
		if !errors.As(err, &pe) || pe.Param != tc.param {
			t.Errorf("%+v: got %v, want a ParamError for %s", tc.f, err, tc.param)
		}
	}
	// 400 days is allowed.
	f := query.Filter{Application: "Game", Since: day("2025-10-07"), Until: day("2026-11-10")}
	if f.Days() != 400 {
		t.Fatalf("%d days", f.Days())
	}
	if _, err := query.ComputeStats(context.Background(), db, f, day("2026-11-10")); err != nil {
		t.Errorf("400 days: %v", err)
	}
}
