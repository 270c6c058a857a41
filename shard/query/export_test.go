package query_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/query"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
)

// newDB writes events into a new database through the real writer and
// returns its path.
func newDB(tb testing.TB, events []shard.Event) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "events.db")
	db := shard.New(path, shard.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := db.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	for i := 0; i < len(events); i += 100 {
		if err := db.Write(0, events[i:min(i+100, len(events))]); err != nil {
			tb.Fatal(err)
		}
	}
	return path
}

func event(i int, app, typ string, at time.Time) shard.Event {
	return shard.Event{EventType: typ, Application: app, Version: "1.0", Platform: "Linux",
		UserID: fmt.Sprintf("user-%d", i%7), SessionID: fmt.Sprintf("s-%d", i), Value: fmt.Sprintf(`{"i":%d}`, i), Time: at}
}

func TestReader_Export_NDJSONValues(t *testing.T) {
	at := time.Date(2026, 11, 28, 2, 19, 55, 244281000, time.UTC)
	odd := shard.Event{EventType: "we\"ird\\\n", Application: "Émoji 😀", Version: "nul\x00inside", Platform: "tab\t",
		UserID: "u", SessionID: "s", Value: `{"big":1e99999,"s":"😀\u0000","n":[1,2.5,null]}`, Time: at}
	path := newDB(t, []shard.Event{odd})
	var out bytes.Buffer
	res, err := querytest.OpenReader(t, path).Export(context.Background(), query.ExportFilter{}, query.NDJSON, &out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 1 || res.LastID != 1 {
		t.Errorf("result: got %+v, want 1 row, last id 1", res)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimSuffix(out.Bytes(), []byte("\n")), &got); err != nil {
		t.Fatalf("line %q: %v", out.String(), err)
	}
	str := func(k string) string {
		var s string
		if err := json.Unmarshal(got[k], &s); err != nil {
			t.Errorf("%s: %v", k, err)
		}
		return s
	}
	for k, want := range map[string]string{"event_type": odd.EventType, "application": odd.Application, "version": odd.Version,
		"platform": odd.Platform, "user_id": "u", "session_id": "s", "time": "2026-11-28 02:19:55.244281"} {
		if s := str(k); s != want {
			t.Errorf("%s: got %q, want %q", k, s, want)
		}
	}
	if string(got["value"]) != odd.Value {
		t.Errorf("value: got %s, want the stored text %s", got["value"], odd.Value)
	}
	if string(got["id"]) != "1" {
		t.Errorf("id: got %s", got["id"])
	}
}

func TestReader_Export_FiltersAndPaging(t *testing.T) {
	day := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var events []shard.Event
	for i := range 5000 {
		app, typ := "A", "start"
		if i%3 == 0 {
			app = "B"
		}
		if i%5 == 0 {
			typ = "end"
		}
		events = append(events, event(i, app, typ, day.Add(time.Duration(i)*time.Minute)))
	}
	r := querytest.OpenReader(t, newDB(t, events))
	ids := func(f query.ExportFilter) []int64 {
		t.Helper()
		var out bytes.Buffer
		res, err := r.Export(context.Background(), f, query.NDJSON, &out, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
			if line == "" {
				continue
			}
			var row struct{ ID int64 }
			if err := json.Unmarshal([]byte(line), &row); err != nil {
				t.Fatal(err)
			}
			got = append(got, row.ID)
		}
		if res.Rows != int64(len(got)) {
			t.Errorf("rows: result says %d, wrote %d", res.Rows, len(got))
		}
		if len(got) > 0 && res.LastID != got[len(got)-1] {
			t.Errorf("last id: result says %d, last written %d", res.LastID, got[len(got)-1])
		}
		return got
	}
	want := func(f func(i int, e shard.Event) bool) []int64 {
		var w []int64
		for i, e := range events {
			if f(i, e) {
				w = append(w, int64(i+1))
			}
		}
		return w
	}
	since, until := day.Add(100*time.Minute), day.Add(4000*time.Minute)
	cases := []struct {
		name string
		f    query.ExportFilter
		want []int64
	}{
		{"all", query.ExportFilter{}, want(func(int, shard.Event) bool { return true })},
		{"application", query.ExportFilter{Application: "B"}, want(func(_ int, e shard.Event) bool { return e.Application == "B" })},
		{"event type and application", query.ExportFilter{Application: "A", EventType: "end"},
			want(func(_ int, e shard.Event) bool { return e.Application == "A" && e.EventType == "end" })},
		{"since inclusive, until exclusive", query.ExportFilter{Since: since, Until: until},
			want(func(_ int, e shard.Event) bool { return !e.Time.Before(since) && e.Time.Before(until) })},
		{"after id and limit", query.ExportFilter{AfterID: 4990, Limit: 3}, []int64{4991, 4992, 4993}},
		{"no match", query.ExportFilter{Application: "' OR 1=1 --"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ids(tc.f); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %d ids, want %d (first got %v)", len(got), len(tc.want), got[:min(5, len(got))])
			}
		})
	}
	// Paging by after_id covers every row exactly once.
	var all []int64
	for after := int64(0); ; {
		page := ids(query.ExportFilter{AfterID: after, Limit: 777})
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1]
	}
	if fmt.Sprint(all) != fmt.Sprint(want(func(int, shard.Event) bool { return true })) {
		t.Errorf("paging: got %d rows, want %d, each once", len(all), len(events))
	}
}

func TestReader_Export_CSV(t *testing.T) {
	at := time.Date(2026, 11, 28, 2, 19, 55, 0, time.UTC)
	path := newDB(t, []shard.Event{{EventType: `say "hi"`, Application: "a,b", Version: "line\nbreak", Platform: "p",
		UserID: "u", SessionID: "s", Value: `{"q":"\""}`, Time: at}})
	var out bytes.Buffer
	if _, err := querytest.OpenReader(t, path).Export(context.Background(), query.ExportFilter{}, query.CSV, &out, nil); err != nil {
		t.Fatal(err)
	}
	want := "id,event_type,application,version,platform,user_id,session_id,value,time\r\n" +
		`1,"say ""hi""","a,b","line` + "\n" + `break","p","u","s","{""q"":""\""""}","2026-11-28 02:19:55.000000"` + "\r\n"
	if out.String() != want {
		t.Errorf("got\n%q\nwant\n%q", out.String(), want)
	}
}

func TestOpen_NotADatabase(t *testing.T) {
	if _, err := query.Open(filepath.Join(t.TempDir(), "missing.db"), query.Options{}); !errors.Is(err, query.ErrNoDatabase) {
		t.Errorf("missing file: got %v, want ErrNoDatabase", err)
	}
}

func TestParseInstant(t *testing.T) {
	for in, want := range map[string]string{
		"2026-11-01":                "2026-11-01T00:00:00Z",
		"2026-11-01T12:30:00Z":      "2026-11-01T12:30:00Z",
		"2026-11-01T12:30:00+02:00": "2026-11-01T10:30:00Z",
	} {
		got, err := query.ParseInstant(in)
		if err != nil || got.UTC().Format(time.RFC3339) != want {
			t.Errorf("ParseInstant(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "2026-13-01", "yesterday", "2026-11-01 12:00", "1'; DROP TABLE event; --"} {
		if _, err := query.ParseInstant(bad); err == nil {
			t.Errorf("ParseInstant(%q): no error", bad)
		}
	}
}

// TestReader_Export_Ring: an export of a database whose staging ring holds
// stale copies of merged events and staged ones, with chunks that end
// below, across and above the merged watermark, holds every event once, in
// id order, filters applied to the staged rows too: what event_all holds.
func TestReader_Export_Ring(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	db := shard.New(path, shard.Options{MergeInterval: time.Hour}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	at := time.Date(2026, 11, 28, 2, 0, 0, 0, time.UTC)
	written := 0
	write := func(n int) {
		evs := make([]shard.Event, n)
		for i := range evs {
			evs[i] = event(written+i, []string{"A", "B"}[(written+i)%2], "t", at)
		}
		if err := db.Write(0, evs); err != nil {
			t.Fatal(err)
		}
		written += n
	}
	write(3100)
	if err := db.Merge(context.Background()); err != nil {
		t.Fatal(err)
	}
	write(2500) // staged: ids 3101 to 5600
	r := querytest.OpenReader(t, path)
	for _, f := range []query.ExportFilter{{}, {Application: "B"}, {AfterID: 2999}, {Application: "A", AfterID: 3050}} {
		var out bytes.Buffer
		res, err := r.Export(context.Background(), f, query.NDJSON, &out, nil)
		if err != nil {
			t.Fatal(err)
		}
		var want []int64
		for id := f.AfterID + 1; id <= int64(written); id++ {
			if f.Application == "" || f.Application == []string{"A", "B"}[(id-1)%2] {
				want = append(want, id)
			}
		}
		var got []int64
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var row struct{ ID int64 }
			if err := json.Unmarshal([]byte(line), &row); err != nil {
				t.Fatalf("%+v: line %q: %v", f, line, err)
			}
			got = append(got, row.ID)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || res.Rows != int64(len(want)) {
			t.Errorf("%+v: got %d rows (result %+v), want %d (ids %d to %d)", f, len(got), res, len(want), want[0], want[len(want)-1])
		}
	}
}
