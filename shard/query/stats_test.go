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

// The figures are worked out by hand from testdata/known/events.tsv; the
// want-*.json files beside it hold the larger answers.

func TestComputeStats_Known(t *testing.T) {
	db := querytest.OpenReadOnly(t, querytest.Known(t))
	ctx := context.Background()

	got, err := query.ComputeStats(ctx, db, nov("Game"), day("2026-11-10"))
	if err != nil {
		t.Fatal(err)
	}
	querytest.EqualJSON(t, "November", got, querytest.Want(t, "want-stats-november.json"))

	linux := nov("Game")
	linux.Platform = "Linux"
	got, err = query.ComputeStats(ctx, db, linux, day("2026-11-10"))
	if err != nil {
		t.Fatal(err)
	}
	querytest.EqualJSON(t, "November, Linux", got, querytest.Want(t, "want-stats-november-linux.json"))

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
