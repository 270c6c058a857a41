package pgquery_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/forward"
	"github.com/gocolytics/gocolytics/shard/forward/pgtest"
	"github.com/gocolytics/gocolytics/shard/pgquery"
	"github.com/gocolytics/gocolytics/shard/query"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func day(s string) time.Time {
	d, err := time.Parse(query.DayFormat, s)
	if err != nil {
		panic(err)
	}
	return d
}

// valueRows are events whose values try the edges of value statistics and
// of the trip to jsonb: nested and missing fields, text, booleans and
// arrays where a number is looked for, a number out of range, NUL, emoji,
// key order, and times with and without a fraction of a second.
func valueRows() []shard.Event {
	values := []string{
		`{"stats":{"time":12.5},"score":3}`,
		`{"score":"high"}`,
		`{}`,
		`{"score":1e99999}`,
		`{"score":-0.0,"stats":{"time":"slow"}}`,
		`{"score":1.5e3}`,
		`{"score":12345678901234567}`,
		`{"a":[1,2],"score":7,"stats":{"time":0.1}}`,
		`{"score":[5]}`,
		`{"name":"x\u0000y","score":2}`,
		`{"b":1,"a":2,"score":0.1}`,
		`{"emoji":"🎮","score":3.25,"stats":{"time":1e2}}`,
		`{"score":true,"s":{"0":4}}`,
		`{"s":[4],"score":null}`,
		`{"deep":{"a":{"b":{"c":{"d":[1,{"e":"f"}]}}}},"score":-12.75}`,
	}
	var out []shard.Event
	at := time.Date(2026, 11, 5, 10, 0, 0, 123456000, time.UTC)
	for i, v := range values {
		out = append(out, shard.Event{Time: at.Add(time.Duration(i) * 7 * time.Hour), Application: "Values", Version: "2.0",
			Platform: []string{"Linux", "Web"}[i%2], UserID: []string{"v1", "v2", "v3"}[i%3], SessionID: []string{"w1", "w2", "w3", "w4"}[i%4],
			EventType: "level_end", Value: v})
	}
	out[3].Time = out[3].Time.Truncate(time.Second)
	return out
}

// dataset is the known dataset, a generated game and valueRows, in time
// order, as a server would have stored them.
func dataset(t *testing.T) []shard.Event {
	ev := querytest.ReadTSV(t, querytest.KnownDataset())
	ev = append(ev, querytest.Realistic{Events: 4000, Players: 300, Days: 40, Last: day("2026-11-10"), Seed: 3}.Generate()...)
	ev = append(ev, valueRows()...)
	slices.SortStableFunc(ev, func(a, b shard.Event) int { return a.Time.Compare(b.Time) })
	return ev
}

// sources writes the dataset into a node's SQLite database, forwards it to
// a new database of the package's PostgreSQL server, waits until every row
// is there, and returns a reader of each.
func sources(t *testing.T) (sqlite, pg *query.Reader) {
	t.Helper()
	srv := pgtest.Shared(t)
	url := srv.CreateDB(t, strings.ToLower(strings.ReplaceAll(t.Name(), "/", "_")))
	path := filepath.Join(t.TempDir(), "node.db")
	ev := dataset(t)
	querytest.Write(t, path, ev)

	f := forward.New(forward.Config{SQLitePath: path, PostgresURL: url, NodeID: "n1", Interval: 20 * time.Millisecond},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	deadline := time.Now().Add(60 * time.Second)
	for s := f.Status(); s.Position < int64(len(ev)) || s.LagEvents != 0; s = f.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("forwarder status %+v, want position %d and no lag", s, len(ev))
		}
		time.Sleep(20 * time.Millisecond)
	}

	sqlite = querytest.OpenReader(t, path)
	pg, err := pgquery.Open(url, query.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	return sqlite, pg
}

// same fails the test unless both sources give the same JSON for what.
func same(t *testing.T, what string, ask func(s query.Source) (any, error), sqlite, pg query.Source) {
	t.Helper()
	var out [2][]byte
	for i, s := range []query.Source{sqlite, pg} {
		v, err := ask(s)
		if err != nil {
			t.Errorf("%s from %s: %v", what, []string{"sqlite", "postgres"}[i], err)
			return
		}
		if out[i], err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(out[0], out[1]) {
		t.Errorf("%s differs:\nsqlite:   %s\npostgres: %s", what, out[0], out[1])
	}
}

// TestPostgres_SameAsSQLite: the stats API's figures, the recent events
// and the exports from PostgreSQL equal those from the SQLite database the
// rows were forwarded from: the same JSON byte for byte, values (jsonb
// orders keys and writes numbers its way) compared as JSON.
func TestPostgres_SameAsSQLite(t *testing.T) {
	sqlite, pg := sources(t)
	t.Run("figures", func(t *testing.T) { sameFigures(t, sqlite, pg) })
	t.Run("export", func(t *testing.T) { sameExports(t, sqlite, pg) })
}

func sameFigures(t *testing.T, sqlite, pg query.Source) {
	ctx := context.Background()

	game := query.Filter{Application: "Game", Since: day("2026-11-01"), Until: day("2026-11-10")}
	oct := query.Filter{Application: "Game", Since: day("2026-10-01"), Until: day("2026-11-10")}
	linux := game
	linux.Platform = "Linux"
	bench := query.Filter{Application: "Bench Game", Since: day("2026-10-02"), Until: day("2026-11-10")}
	short := bench
	short.Since = day("2026-11-08")
	v12 := bench
	v12.Version = "1.2.0"
	ends := bench
	ends.EventType, ends.Platform = "level_end", "Android"
	values := query.Filter{Application: "Values", Since: day("2026-11-01"), Until: day("2026-11-10"), EventType: "level_end"}
	for _, c := range []struct {
		name  string
		f     query.Filter
		today time.Time
	}{
		{"known November", game, day("2026-11-10")},
		{"known November, today the 5th", game, day("2026-11-05")},
		{"known from October", oct, day("2026-11-30")},
		{"known November, Linux", linux, day("2026-11-10")},
		{"generated 40 days", bench, day("2026-11-10")},
		{"generated 3 days", short, day("2026-11-10")},
		{"generated, version 1.2.0", v12, day("2026-11-10")},
		{"generated, level_end on Android", ends, day("2026-11-10")},
		{"values", values, day("2026-11-10")},
	} {
		same(t, "stats "+c.name, func(s query.Source) (any, error) {
			return s.Stats(ctx, c.f, c.today, "event_type", "version", "platform")
		}, sqlite, pg)
	}
	for _, c := range []struct {
		f     query.Filter
		steps []string
	}{
		{bench, []string{"start", "level_start", "level_end", "purchase"}},
		{v12, []string{"level_start", "level_end", "level_start"}},
		{oct, []string{"start", "level_end"}},
	} {
		same(t, "funnel "+strings.Join(c.steps, ","), func(s query.Source) (any, error) { return s.Funnel(ctx, c.f, c.steps) }, sqlite, pg)
	}
	ends.Platform = ""
	for _, c := range []struct {
		f     query.Filter
		field string
	}{
		{ends, "score"}, {ends, "stats.time"}, {ends, "level"}, {ends, "missing"},
		{values, "score"}, {values, "stats.time"}, {values, "s.0"}, {values, "name"}, {values, "deep.a.b.c.d"},
	} {
		same(t, "value "+c.f.Application+" "+c.field, func(s query.Source) (any, error) { return s.Value(ctx, c.f, c.field) }, sqlite, pg)
	}
	for _, by := range []string{"event_type", "version", "platform"} {
		same(t, "series by "+by, func(s query.Source) (any, error) { return s.Series(ctx, bench, by) }, sqlite, pg)
	}
	same(t, "applications", func(s query.Source) (any, error) { return s.Applications(ctx) }, sqlite, pg)
	for _, c := range []struct {
		app   string
		limit int
	}{{"", 60}, {"Values", 20}, {"Bench Game", 100}} {
		same(t, "recent "+c.app, func(s query.Source) (any, error) {
			ev, err := s.Recent(ctx, c.app, c.limit)
			for i := range ev {
				ev[i].Value = canonical(t, ev[i].Value)
			}
			return ev, err
		}, sqlite, pg)
	}
}

// sameExports: exports from PostgreSQL, in both formats and with every
// filter, hold the same rows as from SQLite, in the same order, with the
// same ids (one node forwarded into a new database, so PostgreSQL's ids
// are the node's) and the same text, values compared as JSON.
func sameExports(t *testing.T, sqlite, pg query.Source) {
	since, _ := query.ParseInstant("2026-11-05T10:00:00.123456Z")
	until, _ := query.ParseInstant("2026-11-08T17:00:00+01:00")
	for _, f := range []query.ExportFilter{
		{},
		{Application: "Bench Game", EventType: "level_end"},
		{Application: "Values", Since: since, Until: until},
		{AfterID: 100, Limit: 2500},
		{Since: day("2026-11-01"), Limit: 7},
	} {
		for _, format := range []query.Format{query.NDJSON, query.CSV} {
			a, ra := export(t, sqlite, f, format)
			b, rb := export(t, pg, f, format)
			if ra != rb || ra.Rows == 0 {
				t.Errorf("export %+v %s: result %+v from sqlite, %+v from postgres", f, format.Ext(), ra, rb)
			}
			if len(a) != len(b) {
				t.Errorf("export %+v %s: %d records from sqlite, %d from postgres", f, format.Ext(), len(a), len(b))
				continue
			}
			for i := range a {
				if a[i] != b[i] {
					t.Errorf("export %+v %s record %d:\nsqlite:   %s\npostgres: %s", f, format.Ext(), i, a[i], b[i])
					break
				}
			}
		}
	}
}

// export reads a whole export from s and returns its records (the value
// column made canonical) and result.
func export(t *testing.T, s query.Source, f query.ExportFilter, format query.Format) ([]string, query.ExportResult) {
	t.Helper()
	st := s.NewExport(f, format)
	var all bytes.Buffer
	for {
		b, err := st.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
	}
	var out []string
	if format == query.CSV {
		recs, err := csv.NewReader(&all).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range recs {
			if i > 0 {
				r[7] = string(canonical(t, []byte(r[7])))
			}
			out = append(out, strings.Join(r, "\x1f"))
		}
		return out, st.Result()
	}
	for _, line := range strings.SplitAfter(all.String(), "\n") {
		if line == "" {
			continue
		}
		var row map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("%v: %q", err, line)
		}
		row["value"] = canonical(t, row["value"])
		b, _ := json.Marshal(row)
		out = append(out, string(b))
	}
	return out, st.Result()
}

// canonical is the JSON value b with its keys sorted and numbers written
// as Go writes a float64 (-0 as 0, which jsonb's numeric cannot hold): the
// form both databases' texts of one value share. Text that float64 cannot
// read (1e99999, kept exactly by both) is returned as it is.
func canonical(t *testing.T, b []byte) []byte {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return b
	}
	out, err := json.Marshal(noNegativeZero(v))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func noNegativeZero(v any) any {
	switch v := v.(type) {
	case float64:
		return v + 0
	case []any:
		for i := range v {
			v[i] = noNegativeZero(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = noNegativeZero(v[k])
		}
	}
	return v
}
