package query_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/query"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

// randomFilters are the ranges and filters the random tests ask for.
var randomFilters = []query.Filter{
	{Application: "A", Since: day("2026-10-10"), Until: day("2026-10-30")},
	{Application: "B", Since: day("2026-10-01"), Until: day("2026-11-09")},
	{Application: "A", Since: day("2026-10-20"), Until: day("2026-10-24"), Platform: "Web"},
	{Application: "B", Since: day("2026-10-05"), Until: day("2026-10-25"), Version: "2", EventType: "level"},
}

// randomDataset writes 1500 random events in random time order (as an
// imported database may hold them), or in time order (as a server writes
// them) when inOrder, and returns them and the path.
func randomDataset(t *testing.T, inOrder bool) ([]shard.Event, string) {
	rng := rand.New(rand.NewPCG(42, 1))
	start := day("2026-10-01")
	var events []shard.Event
	for i := 0; i < 1500; i++ {
		u := rng.IntN(40)
		events = append(events, shard.Event{
			Time:        start.Add(time.Duration(rng.IntN(40*24*60)) * time.Minute),
			Application: []string{"A", "B"}[rng.IntN(2)],
			UserID:      fmt.Sprintf("u%d", u),
			SessionID:   fmt.Sprintf("s%d", rng.IntN(200)),
			EventType:   []string{"start", "level", "end"}[rng.IntN(3)],
			Version:     []string{"1", "2", "3\tbeta"}[rng.IntN(3)],
			Platform:    []string{"Linux", "Web"}[u%2],
			Value:       fmt.Sprintf(`{"score":%d}`, rng.IntN(1000)),
		})
	}
	if inOrder {
		sort.SliceStable(events, func(i, j int) bool { return events[i].Time.Before(events[j].Time) })
	}
	path := filepath.Join(t.TempDir(), "random.db")
	querytest.Write(t, path, events)
	return events, path
}

// eraseAndPrune erases u1, u2 and u3, u4's rows of application A, and
// the rows before prune; each must delete rows.
func eraseAndPrune(t *testing.T, db *shard.DB, prune time.Time) {
	t.Helper()
	ctx := context.Background()
	for _, u := range []string{"u1", "u2", "u3"} {
		if n, err := db.Erase(ctx, u, ""); err != nil || n == 0 {
			t.Fatalf("erase %s: %d, %v", u, n, err)
		}
	}
	if n, err := db.Erase(ctx, "u4", "A"); err != nil || n == 0 {
		t.Fatalf("erase u4 of A: %d, %v", n, err)
	}
	if n, err := db.Prune(ctx, prune); err != nil || n == 0 {
		t.Fatalf("prune: %d, %v", n, err)
	}
}

// TestComputeStats_Random compares the answers with the definitions worked
// out naively in Go, for several ranges and filters: read from the summary
// tables, from the raw rows (the same database without them), and from the
// summaries again after erasures and a retention delete.
func TestComputeStats_Random(t *testing.T) {
	events, path := randomDataset(t, false)
	raw := querytest.WithoutSummaries(t, path)
	check := func(name string, db *sql.DB, events []shard.Event, summarised bool) {
		t.Helper()
		if got := querytest.Summarised(t, db); got != summarised {
			t.Fatalf("%s: summaries used: %v, want %v", name, got, summarised)
		}
		for _, f := range randomFilters {
			today := day("2026-10-28")
			got, err := query.ComputeStats(context.Background(), db, f, today)
			if err != nil {
				t.Fatal(err)
			}
			want := naiveStats(events, f, today)
			querytest.EqualJSON(t, fmt.Sprintf("%s %+v", name, f), got, string(want))
		}
	}
	check("summaries", querytest.OpenReadOnly(t, path), events, true)
	check("raw", querytest.OpenReadOnly(t, raw), events, false)

	w := shardtest.Open(t, path, shard.Options{})
	eraseAndPrune(t, w, day("2026-10-12").Add(13*time.Hour))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	shardtest.CheckSummaries(t, path)
	db := querytest.OpenReadOnly(t, path)
	check("after deletes", db, querytest.Events(t, db), true)
}

// TestComputeFunnelValue_Random checks that the funnel and value
// statistics read through the summaries' id ranges answer as the raw rows
// do: on rows in time order (the funnel streams them in id order) and in
// random order (it sorts them).
func TestComputeFunnelValue_Random(t *testing.T) {
	for _, inOrder := range []bool{true, false} {
		t.Run(fmt.Sprintf("in order %v", inOrder), func(t *testing.T) { funnelValueRandom(t, inOrder) })
	}
}

func funnelValueRandom(t *testing.T, inOrder bool) {
	_, path := randomDataset(t, inOrder)
	sum, raw := querytest.OpenReadOnly(t, path), querytest.OpenReadOnly(t, querytest.WithoutSummaries(t, path))
	for _, f := range randomFilters {
		for _, steps := range [][]string{{"start", "level", "end"}, {"level", "level"}, {"end", "start", "end", "start"}} {
			sameFunnel(t, fmt.Sprintf("funnel %v %+v", steps, f), sum, raw, f, steps)
		}
		f.EventType = "level"
		got := sameValue(t, fmt.Sprintf("value %+v", f), sum, raw, f, "score")
		total := int64(0)
		for _, d := range got {
			total += d.Count
		}
		if total == 0 {
			t.Errorf("value %+v: no numbers", f)
		}
	}
}

// sameFunnel checks that the funnel read from sum (the summary tables'
// path) equals the one read from raw, and returns it.
func sameFunnel(t *testing.T, what string, sum, raw *sql.DB, f query.Filter, steps []string) []query.FunnelStep {
	t.Helper()
	ctx := context.Background()
	got, err := query.ComputeFunnel(ctx, sum, f, steps)
	if err != nil {
		t.Fatal(err)
	}
	want, err := query.ComputeFunnel(ctx, raw, f, steps)
	if err != nil {
		t.Fatal(err)
	}
	querytest.EqualJSON(t, what, got, string(mustJSON(t, want)))
	return got
}

// sameValue checks that the value statistics of field read from sum (the
// summaries) equal those read from raw (the raw rows), and returns them.
func sameValue(t *testing.T, what string, sum, raw query.Querier, f query.Filter, field string) []query.ValueDay {
	t.Helper()
	ctx := context.Background()
	got, err := query.ComputeValue(ctx, sum, f, field)
	if err != nil {
		t.Fatal(err)
	}
	want, err := query.ComputeValue(ctx, raw, f, field)
	if err != nil {
		t.Fatal(err)
	}
	querytest.EqualJSON(t, what, got, string(mustJSON(t, want)))
	return got
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// naiveStats answers the stats API by its definitions, over all events in
// memory, with none of the SQL's shortcuts.
func naiveStats(events []shard.Event, f query.Filter, today time.Time) []byte {
	dayOf := func(t time.Time) string { return t.Format(query.DayFormat) }
	in := func(e shard.Event, since, until time.Time) bool {
		d := dayOf(e.Time)
		return e.Application == f.Application && d >= dayOf(since) && d <= dayOf(until) &&
			(f.Version == "" || e.Version == f.Version) && (f.Platform == "" || e.Platform == f.Platform) &&
			(f.EventType == "" || e.EventType == f.EventType)
	}
	first := map[string]time.Time{}
	for _, e := range events {
		if e.Application == f.Application {
			if t, ok := first[e.UserID]; !ok || e.Time.Before(t) {
				first[e.UserID] = e.Time
			}
		}
	}
	active := map[string]map[string]bool{} // day -> users
	users := map[string]bool{}
	type span struct{ lo, hi time.Time }
	sessions := map[string]*span{}
	dayEvents := map[string]int64{}
	var total int64
	for _, e := range events {
		if !in(e, f.Since, f.Until) {
			continue
		}
		d := dayOf(e.Time)
		if active[d] == nil {
			active[d] = map[string]bool{}
		}
		active[d][e.UserID], users[e.UserID] = true, true
		dayEvents[d]++
		total++
		if s := sessions[e.SessionID]; s == nil {
			sessions[e.SessionID] = &span{e.Time, e.Time}
		} else {
			if e.Time.Before(s.lo) {
				s.lo = e.Time
			}
			if e.Time.After(s.hi) {
				s.hi = e.Time
			}
		}
	}
	window := func(n int) int {
		seen := map[string]bool{}
		for _, e := range events {
			if in(e, f.Until.AddDate(0, 0, 1-n), f.Until) {
				seen[e.UserID] = true
			}
		}
		return len(seen)
	}
	var lengths []float64
	daySessions := map[string]int{}
	for _, s := range sessions {
		lengths = append(lengths, s.hi.Sub(s.lo).Seconds())
		daySessions[dayOf(s.lo)]++
	}
	sort.Float64s(lengths)
	median := 0.0
	if n := len(lengths); n > 0 {
		median = lengths[n/2]
		if n%2 == 0 {
			median = (lengths[n/2-1] + lengths[n/2]) / 2
		}
	}
	cohort := func(d string) []string {
		var c []string
		for u := range active[d] {
			if dayOf(first[u]) == d {
				c = append(c, u)
			}
		}
		return c
	}
	var days, retention []string
	newTotal := 0
	for d := f.Since; !d.After(f.Until); d = d.AddDate(0, 0, 1) {
		k := dayOf(d)
		c := cohort(k)
		newTotal += len(c)
		days = append(days, fmt.Sprintf(`{"day":%q,"users":%d,"new_users":%d,"sessions":%d,"events":%d}`, k, len(active[k]), len(c), daySessions[k], dayEvents[k]))
		r := fmt.Sprintf(`{"cohort":%q,"users":%d`, k, len(c))
		for _, n := range []int{1, 7, 30} {
			target := d.AddDate(0, 0, n)
			if target.After(f.Until) || target.After(today) {
				r += fmt.Sprintf(`,"d%d":null`, n)
				continue
			}
			back := 0
			for _, u := range c {
				if active[dayOf(target)][u] {
					back++
				}
			}
			r += fmt.Sprintf(`,"d%d":%d`, n, back)
		}
		retention = append(retention, r+"}")
	}
	last := dayOf(f.Until)
	return []byte(fmt.Sprintf(`{"summary":{"users":%d,"new_users":%d,"sessions":%d,"events":%d,"dau":%d,"wau":%d,"mau":%d,"median_session_seconds":%v},
"days":[%s],"event_types":%s,"versions":%s,"platforms":%s,"retention":[%s]}`,
		len(users), newTotal, len(sessions), total, len(active[last]), window(7), window(30), median,
		join(days), naiveShares(events, f, in, func(e shard.Event) string { return e.EventType }, "event_type", true),
		naiveShares(events, f, in, func(e shard.Event) string { return e.Version }, "version", false),
		naiveShares(events, f, in, func(e shard.Event) string { return e.Platform }, "platform", false), join(retention)))
}

func naiveShares(events []shard.Event, f query.Filter, in func(shard.Event, time.Time, time.Time) bool,
	col func(shard.Event) string, name string, byEvents bool) string {
	ev := map[string]int{}
	us := map[string]map[string]bool{}
	for _, e := range events {
		if in(e, f.Since, f.Until) {
			k := col(e)
			ev[k]++
			if us[k] == nil {
				us[k] = map[string]bool{}
			}
			us[k][e.UserID] = true
		}
	}
	var keys []string
	for k := range ev {
		keys = append(keys, k)
	}
	key := func(k string) int {
		if byEvents {
			return ev[k]
		}
		return len(us[k])
	}
	sort.Slice(keys, func(i, j int) bool {
		if key(keys[i]) != key(keys[j]) {
			return key(keys[i]) > key(keys[j])
		}
		return keys[i] < keys[j]
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf(`{%q:%q,"events":%d,"users":%d}`, name, k, ev[k], len(us[k])))
	}
	return "[" + join(parts) + "]"
}

func join(parts []string) string {
	s := ""
	for i, p := range parts {
		if i > 0 {
			s += ","
		}
		s += p
	}
	return s
}

// TestStats_SummariesAndTail reads a database whose newest rows are above
// the summaries' watermark (rows another program inserted, as rows wait
// for the next summary pass): some of new players, some of known ones,
// some dated before the others (a player is then no longer new). Stats,
// series, applications, funnel and value must answer as the raw rows do,
// and the stats as the definitions computed in Go.
func TestStats_SummariesAndTail(t *testing.T) {
	_, path := randomDataset(t, false)
	rng := rand.New(rand.NewPCG(43, 1))
	w, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	start := day("2026-10-01")
	for i := 0; i < 400; i++ {
		u := rng.IntN(60)
		_, err := w.Exec(`INSERT INTO event (event_type, application, version, platform, user_id, session_id, value, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			[]string{"start", "level", "end"}[rng.IntN(3)], []string{"A", "B", "C"}[rng.IntN(3)], []string{"1", "2", "3\tbeta"}[rng.IntN(3)],
			[]string{"Linux", "Web"}[u%2], fmt.Sprintf("u%d", u), fmt.Sprintf("s%d", rng.IntN(260)), fmt.Sprintf(`{"score":%d}`, rng.IntN(1000)),
			start.Add(time.Duration(rng.IntN(40*24*60))*time.Minute).Format(shard.TimeFormat))
		if err != nil {
			t.Fatal(err)
		}
	}
	var built, top int64
	if err := w.QueryRow("SELECT built_id, (SELECT max(id) FROM event) FROM stats_state").Scan(&built, &top); err != nil || built == 0 || top-built != 400 {
		t.Fatalf("watermark %d, newest row %d, %v; want 400 rows above a watermark", built, top, err)
	}
	// Closing checkpoints the rows into the file that WithoutSummaries
	// copies.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sum, raw := querytest.OpenReadOnly(t, path), querytest.OpenReadOnly(t, querytest.WithoutSummaries(t, path))
	if !querytest.Summarised(t, sum) || querytest.Summarised(t, raw) {
		t.Fatal("the summaries must be used on one copy only")
	}
	events := querytest.Events(t, sum)
	ctx := context.Background()
	today := day("2026-10-28")
	filters := append(randomFilters, query.Filter{Application: "C", Since: day("2026-10-01"), Until: day("2026-11-09")})
	for _, f := range filters {
		got, err := query.ComputeStats(ctx, sum, f, today)
		if err != nil {
			t.Fatal(err)
		}
		querytest.EqualJSON(t, fmt.Sprintf("stats %+v", f), got, string(naiveStats(events, f, today)))
		for _, by := range []string{"event_type", "version", "platform"} {
			got, err := query.ComputeSeries(ctx, sum, f, by)
			if err != nil {
				t.Fatal(err)
			}
			want, err := query.ComputeSeries(ctx, raw, f, by)
			if err != nil {
				t.Fatal(err)
			}
			querytest.EqualJSON(t, fmt.Sprintf("series %s %+v", by, f), got, string(mustJSON(t, want)))
		}
		steps := []string{"start", "level", "end"}
		gotF, err := query.ComputeFunnel(ctx, sum, f, steps)
		if err != nil {
			t.Fatal(err)
		}
		wantF, err := query.ComputeFunnel(ctx, raw, f, steps)
		if err != nil {
			t.Fatal(err)
		}
		querytest.EqualJSON(t, fmt.Sprintf("funnel %+v", f), gotF, string(mustJSON(t, wantF)))
		f.EventType = "level"
		gotV, err := query.ComputeValue(ctx, sum, f, "score")
		if err != nil {
			t.Fatal(err)
		}
		wantV, err := query.ComputeValue(ctx, raw, f, "score")
		if err != nil {
			t.Fatal(err)
		}
		querytest.EqualJSON(t, fmt.Sprintf("value %+v", f), gotV, string(mustJSON(t, wantV)))
	}
	// The raw answer's first and last days are those of the first and
	// last rows by id: the random times make them differ from the first
	// and last days with events, so only the counts are compared here
	// and the days against the rows.
	gotA, err := query.Applications(ctx, sum)
	if err != nil {
		t.Fatal(err)
	}
	wantA, err := query.Applications(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(gotA) != len(wantA) || len(gotA) != 3 {
		t.Fatalf("applications: %+v, want %+v", gotA, wantA)
	}
	for i, a := range gotA {
		var first, last string
		if err := sum.QueryRow("SELECT substr(min(time), 1, 10), substr(max(time), 1, 10) FROM event WHERE application = ?", a.Application).Scan(&first, &last); err != nil {
			t.Fatal(err)
		}
		if a.Application != wantA[i].Application || a.Events != wantA[i].Events || a.FirstDay != first || a.LastDay != last {
			t.Errorf("application %d: %+v, want %+v with days %s to %s", i, a, wantA[i], first, last)
		}
	}
}

// TestComputeStats_PackedFields reads users, sessions, event types,
// versions and platforms holding what the packed pieces of the summaries
// separate with (tabs, newlines, spaces, digits; multi-byte characters) on
// some days only, so that some pieces come packed fast and others packed
// safely, and a tail of such rows above the watermark: the stats must
// answer as the definitions computed in Go and as the raw rows do.
func TestComputeStats_PackedFields(t *testing.T) {
	rng := rand.New(rand.NewPCG(44, 1))
	odd := []string{"tab\there", "new\nline", "two\n\nlines\t\t", "12 34", "3 x\t1", "é ü 🎮", " ", "\t", "\n", "9"}
	pick := func(plain []string, oddDay bool) string {
		if oddDay && rng.IntN(3) == 0 {
			return odd[rng.IntN(len(odd))]
		}
		return plain[rng.IntN(len(plain))]
	}
	start := day("2026-10-01")
	event := func() shard.Event {
		at := start.Add(time.Duration(rng.IntN(30*24*60)) * time.Minute)
		oddDay := at.Day()%3 == 0
		u := pick([]string{"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"}, oddDay)
		return shard.Event{
			Time: at, Application: "A", UserID: u, SessionID: pick([]string{"s1", "s2", "s3", "s4", "s5", "s6"}, oddDay) + u,
			EventType: pick([]string{"start", "level", "end"}, oddDay), Version: pick([]string{"1", "2"}, oddDay),
			Platform: pick([]string{"Linux", "Web"}, oddDay), Value: "{}",
		}
	}
	var events []shard.Event
	for range 800 {
		events = append(events, event())
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].Time.Before(events[j].Time) })
	path := filepath.Join(t.TempDir(), "packed.db")
	querytest.Write(t, path, events)
	// The tail: rows another program inserts land above the watermark.
	w, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		e := event()
		if _, err := w.Exec(`INSERT INTO event (event_type, application, version, platform, user_id, session_id, value, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			e.EventType, e.Application, e.Version, e.Platform, e.UserID, e.SessionID, e.Value, e.Time.Format(shard.TimeFormat)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sum, raw := querytest.OpenReadOnly(t, path), querytest.OpenReadOnly(t, querytest.WithoutSummaries(t, path))
	if !querytest.Summarised(t, sum) || querytest.Summarised(t, raw) {
		t.Fatal("the summaries must be used on one copy only")
	}
	events = querytest.Events(t, sum)
	ctx := context.Background()
	today := day("2026-10-25")
	for _, f := range []query.Filter{
		{Application: "A", Since: day("2026-10-01"), Until: day("2026-10-30")},
		{Application: "A", Since: day("2026-10-02"), Until: day("2026-10-04")},
		{Application: "A", Since: day("2026-10-01"), Until: day("2026-10-30"), Version: "tab\there"},
		{Application: "A", Since: day("2026-10-01"), Until: day("2026-10-30"), Platform: "\n", EventType: "end"},
	} {
		got, err := query.ComputeStats(ctx, sum, f, today, "event_type", "version", "platform")
		if err != nil {
			t.Fatal(err)
		}
		want, err := query.ComputeStats(ctx, raw, f, today, "event_type", "version", "platform")
		if err != nil {
			t.Fatal(err)
		}
		querytest.EqualJSON(t, fmt.Sprintf("stats %q", f), got, string(mustJSON(t, want)))
		got.Series = nil
		querytest.EqualJSON(t, fmt.Sprintf("stats %q", f), got, string(naiveStats(events, f, today)))
		if got.Summary.Users == 0 {
			t.Errorf("stats %q: no users", f)
		}
	}
}
