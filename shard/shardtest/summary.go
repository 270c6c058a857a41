package shardtest

import (
	"database/sql"
	"testing"
	"time"
)

// summaryChecks are pairs of queries that must answer the same rows: a
// summary table, and the same figures computed from event's raw rows.
var summaryChecks = []struct{ name, summary, raw string }{
	// A group's rows over all its passes.
	{"stats_activity",
		`SELECT application, day, session_id, user_id, event_type, version, platform, sum(events), min(first_time), max(last_time)
FROM stats_activity GROUP BY 1, 2, 3, 4, 5, 6, 7`,
		`SELECT application, substr(time, 1, 10), session_id, user_id, event_type, version, platform, count(*), min(time) || '', max(time) || ''
FROM event WHERE id <= (SELECT built_id FROM stats_state) GROUP BY 1, 2, 3, 4, 5, 6, 7`},
	// Each row: the rows of its group in its pass, which deletes find by
	// id (folded: the day's rows up to its folded_to; else the last pass
	// that began below the id).
	{"stats_activity by pass",
		`SELECT application, day, pass, session_id, user_id, event_type, version, platform, events, first_time, last_time FROM stats_activity`,
		`SELECT e.application, substr(e.time, 1, 10), CASE WHEN e.id <= d.folded_to THEN -1 ELSE (SELECT max(lo) FROM stats_pass WHERE lo < e.id) END,
	e.session_id, e.user_id, e.event_type, e.version, e.platform, count(*), min(e.time) || '', max(e.time) || ''
FROM event e JOIN stats_day d ON d.application = e.application AND d.day = substr(e.time, 1, 10)
WHERE e.id <= (SELECT built_id FROM stats_state) GROUP BY 1, 2, 3, 4, 5, 6, 7, 8`},
	// A day not pending (0) has all its rows folded; pending is 1 (rows
	// to fold), or 2 (too large to fold: its passes' rows stay).
	{"stats_day pending",
		`SELECT application, day FROM stats_activity WHERE pass >= 0 EXCEPT SELECT application, day FROM stats_day WHERE pending
UNION ALL SELECT application, day FROM stats_day WHERE pending NOT IN (0, 1, 2)`,
		`SELECT '', '' WHERE 0`},
	{"stats_user",
		`SELECT application, user_id, first_time FROM stats_user`,
		`SELECT application, user_id, min(time) || '' FROM event WHERE id <= (SELECT built_id FROM stats_state) GROUP BY 1, 2`},
	{"stats_day events",
		`SELECT application, day, events FROM stats_day WHERE events > 0`,
		`SELECT application, substr(time, 1, 10), count(*) FROM event WHERE id <= (SELECT built_id FROM stats_state) GROUP BY 1, 2`},
	// The id bounds of a day may be wider than its rows (deletes leave
	// them), never narrower.
	{"stats_day",
		`SELECT application, substr(time, 1, 10) FROM event e WHERE id <= (SELECT built_id FROM stats_state) AND NOT EXISTS (SELECT 1 FROM stats_day d
WHERE d.application = e.application AND d.day = substr(e.time, 1, 10) AND e.id BETWEEN d.min_id AND d.max_id)`,
		`SELECT '', '' WHERE 0`},
}

// CheckSummaries fails tb unless the summary tables of the database at path
// are equal to what event's rows up to their watermark give, and cover
// every row.
func CheckSummaries(tb testing.TB, path string) {
	tb.Helper()
	CheckSummariesPart(tb, path)
	db := SQL(tb, path)
	var built, top int64
	if err := db.QueryRow("SELECT built_id, (SELECT coalesce(max(id), 0) FROM event) FROM stats_state").Scan(&built, &top); err != nil || built < top {
		tb.Fatalf("summary state: built %d, newest row %d, %v; want every row summarised", built, top, err)
	}
}

// CheckSummariesPart fails tb unless the summary tables of the database at
// path are equal to what event's rows up to their watermark give, and the
// field registry's numbers to what they give each field up to its own
// (checkValueNums).
func CheckSummariesPart(tb testing.TB, path string) {
	tb.Helper()
	db := SQL(tb, path)
	var built int64
	if err := db.QueryRow("SELECT built_id FROM stats_state").Scan(&built); err != nil {
		tb.Fatalf("summary state: %v", err)
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
	checkValueNums(tb, db)
}

// WaitSummaries waits until the summary tables of the database at path
// cover every row of event (the writer summarises in the background).
func WaitSummaries(tb testing.TB, path string) {
	tb.Helper()
	db := SQL(tb, path)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var built, top int64
		err := db.QueryRow("SELECT built_id, (SELECT coalesce(max(id), 0) FROM event) FROM stats_state").Scan(&built, &top)
		if err == nil && built >= top {
			return
		}
		if err != nil && err != sql.ErrNoRows {
			tb.Logf("summary state: %v", err)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("summary tables not built after 2 minutes (built %d, newest row %d, %v)", built, top, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
