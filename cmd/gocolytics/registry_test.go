package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
)

// TestBinary_ValueRegistersField: a value statistics request to the real
// server makes its writer register the field in the database's registry
// (shard's field registry): in one process, and with two workers, where
// the request is served by a worker and the ask goes over the link to the
// supervisor's writer. The rows are summarised before the request, so the
// field is filled in (backfill) until it is complete; the answer, read raw
// first and from the registry's numbers then, stays the same.
func TestBinary_ValueRegistersField(t *testing.T) {
	t.Parallel()
	for _, workers := range []string{"1", "2"} {
		t.Run("workers="+workers, func(t *testing.T) {
			t.Parallel()
			s := gctest.Start(t, "", "--workers", workers, "--admin-keys", `["the-admin-key"]`, "--summary-interval", "1s", "--merge-quiet-interval", "100ms")
			ev := gctest.NewEvent("a")
			events := make([]gctest.Event, 0, 21)
			for i := 1; i <= 20; i++ {
				e := ev
				e.Value = fmt.Sprintf(`{"stats":{"score":%d}}`, i)
				events = append(events, e)
			}
			other := ev
			other.Value = `{"stats":{"score":"none"}}`
			events = append(events, other)
			if code, body := gctest.Post(t, nil, s.URL("/v1.0/events"), gctest.Batch(events...)); code != 204 {
				t.Fatalf("post: %d %s", code, body)
			}
			db, err := sql.Open("sqlite3", "file:"+s.DBPath+"?mode=ro&_busy_timeout=5000")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			gctest.WaitFor(t, func() bool {
				var n int
				err := db.QueryRow(`SELECT count(*) FROM event WHERE id <= (SELECT built_id FROM stats_state WHERE id = 1)`).Scan(&n)
				return err == nil && n == len(events)
			}, "the rows to be summarised")

			now := time.Now().UTC()
			q := url.Values{"application": {ev.Application}, "event_type": {ev.EventType}, "field": {"stats.score"},
				"since": {now.AddDate(0, 0, -1).Format("2006-01-02")}, "until": {now.Format("2006-01-02")}}
			value := func() string {
				t.Helper()
				code, _, body := getWithKey(t, s.URL("/v1.0/stats/value?"+q.Encode()), "the-admin-key")
				if code != 200 {
					t.Fatalf("value: %d %s", code, body)
				}
				return body
			}
			first := value()
			var days []struct {
				Count, Skipped int
				Avg, Min, Max  *float64
			}
			if err := json.Unmarshal([]byte(first), &days); err != nil {
				t.Fatalf("value: %v: %s", err, first)
			}
			var count, skipped int
			for _, d := range days {
				count, skipped = count+d.Count, skipped+d.Skipped
				if d.Count > 0 && (*d.Avg != 10.5 || *d.Min != 1 || *d.Max != 20) {
					t.Errorf("value: %s, want avg 10.5, min 1, max 20", first)
				}
			}
			if count != 20 || skipped != 1 {
				t.Errorf("value: %d numbers, %d skipped; want 20 and 1: %s", count, skipped, first)
			}

			var row string
			gctest.WaitFor(t, func() bool {
				err := db.QueryRow(`SELECT application || '|' || event_type || '|' || field || '|' || path FROM stats_value_field`).Scan(&row)
				return err == nil
			}, "the field to be registered")
			if want := ev.Application + "|" + ev.EventType + `|stats.score|$."stats"."score"`; row != want {
				t.Fatalf("registry row %q, want %q", row, want)
			}
			gctest.WaitFor(t, func() bool {
				var complete bool
				err := db.QueryRow(`SELECT f.built_id = s.built_id FROM stats_value_field f, stats_state s WHERE s.id = 1`).Scan(&complete)
				return err == nil && complete
			}, "the field to be complete")
			var counted, numbers int
			if err := db.QueryRow(`SELECT sum(events), sum(length(numbers) - length(replace(numbers, ',', '')) + 1) FROM stats_value_num WHERE field = 'stats.score'`).Scan(&counted, &numbers); err != nil || counted != 21 || numbers != 20 {
				t.Errorf("stats_value_num: %d events, %d numbers (%v); want 21 and 20", counted, numbers, err)
			}
			if again := value(); again != first {
				t.Errorf("asked again: %s, first %s", again, first)
			}
		})
	}
}
