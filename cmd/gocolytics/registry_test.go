package main

import (
	"database/sql"
	"net/url"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
)

// TestBinary_ValueRegistersField: a value statistics request to the real
// server (one process) makes its writer register the field in the
// database's registry (shard's field registry), complete on a database
// whose summaries are at id 0; asking again answers the same.
func TestBinary_ValueRegistersField(t *testing.T) {
	t.Parallel()
	s := gctest.Start(t, "", "--admin-keys", `["the-admin-key"]`)
	ev := gctest.NewEvent("a")
	if code, body := gctest.Post(t, nil, s.URL("/v1.0/events"), gctest.Batch(ev)); code != 204 {
		t.Fatalf("post: %d %s", code, body)
	}
	today := time.Now().UTC().Format("2006-01-02")
	q := url.Values{"application": {ev.Application}, "event_type": {ev.EventType}, "field": {"stats.score"}, "since": {today}, "until": {today}}
	code, _, first := getWithKey(t, s.URL("/v1.0/stats/value?"+q.Encode()), "the-admin-key")
	if code != 200 {
		t.Fatalf("value: %d %s", code, first)
	}
	db, err := sql.Open("sqlite3", "file:"+s.DBPath+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var row string
	gctest.WaitFor(t, func() bool {
		err := db.QueryRow(`SELECT application || '|' || event_type || '|' || field || '|' || path || '|' || (built_id = (SELECT built_id FROM stats_state))
FROM stats_value_field`).Scan(&row)
		return err == nil
	}, "the field to be registered")
	if want := ev.Application + "|" + ev.EventType + `|stats.score|$."stats"."score"|1`; row != want {
		t.Fatalf("registry row %q, want %q", row, want)
	}
	if code, _, again := getWithKey(t, s.URL("/v1.0/stats/value?"+q.Encode()), "the-admin-key"); code != 200 || again != first {
		t.Errorf("asked again: %d %s, first %s", code, again, first)
	}
}
