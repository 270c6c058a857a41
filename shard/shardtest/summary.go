package shardtest

import (
	"database/sql"
	"testing"
	"time"
)

// summaryChecks are pairs of queries that must answer the same rows: a
// summary table, and the same figures computed from event's raw rows.
var summaryChecks = []struct{ name, summary, raw string }{
	{"stats_activity",
		`SELECT application, day, session_id, user_id, event_type, version, platform, events, first_time, last_time FROM stats_activity`,
		`SELECT application, substr(time, 1, 10), session_id, user_id, event_type, version, platform, count(*), min(time) || '', max(time) || ''
FROM event GROUP BY 1, 2, 3, 4, 5, 6, 7`},
	{"stats_user",
		`SELECT application, user_id, first_time FROM stats_user`,
		`SELECT application, user_id, min(time) || '' FROM event GROUP BY 1, 2`},
	// The id bounds of a day may be wider than its rows (deletes leave
	// them), never narrower.
	{"stats_day",
		`SELECT application, substr(time, 1, 10) FROM event e WHERE NOT EXISTS (SELECT 1 FROM stats_day d
WHERE d.application = e.application AND d.day = substr(e.time, 1, 10) AND e.id BETWEEN d.min_id AND d.max_id)`,
		`SELECT '', '' WHERE 0`},
}

// CheckSummaries fails tb unless the summary tables of the database at path
// are complete and equal to what event's rows give.
func CheckSummaries(tb testing.TB, path string) {
	tb.Helper()
	db := SQL(tb, path)
	var start, built int64
	if err := db.QueryRow("SELECT start_id, built_id FROM stats_state").Scan(&start, &built); err != nil || built < start {
		tb.Fatalf("summary state: start %d, built %d, %v; want built", start, built, err)
	}
	for _, c := range summaryChecks {
		for _, q := range [][2]string{{c.summary, c.raw}, {c.raw, c.summary}} {
			var n int
			if err := db.QueryRow("SELECT count(*) FROM (" + q[0] + " EXCEPT " + q[1] + ")").Scan(&n); err != nil {
				tb.Fatal(err)
			}
			if n != 0 {
				tb.Errorf("%s: %d rows differ from the raw rows", c.name, n)
			}
		}
	}
}

// WaitSummaries waits until the summary tables of the database at path are
// built (the writer builds them in the background after Open).
func WaitSummaries(tb testing.TB, path string) {
	tb.Helper()
	db := SQL(tb, path)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var start, built int64
		err := db.QueryRow("SELECT start_id, built_id FROM stats_state").Scan(&start, &built)
		if err == nil && built >= start {
			return
		}
		if err != nil && err != sql.ErrNoRows {
			tb.Logf("summary state: %v", err)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("summary tables not built after 2 minutes (start %d, built %d, %v)", start, built, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
