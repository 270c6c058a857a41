package query_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/query"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

// logBuffer is a log's text, written by the writer's goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// openLogged opens the writer on path with its log written to the
// returned buffer (the test's cleanup closes it), registers fields and
// summarises them.
func openLogged(t *testing.T, path string, fields [][3]string) (*shard.DB, *logBuffer) {
	t.Helper()
	logs := new(logBuffer)
	db := shard.New(path, shard.Options{}, slog.New(slog.NewTextHandler(logs, nil)))
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, k := range fields {
		register(t, db, k)
	}
	if err := db.Summarize(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db, logs
}

// TestValueFields_DamagedErase erases a player from a database whose
// field registry does not hold that player's numbers (a damaged or
// hand-edited file: numbers missing from one field's rows, another
// field's rows gone): the erasure must succeed and its rows be gone; the
// damaged fields are filled in again (a warning naming the field, not the
// player), the intact one is kept, and all three then answer from the
// registry as the raw rows do.
func TestValueFields_DamagedErase(t *testing.T) {
	path := registryDataset(t, 11, 800)
	fields := [][3]string{{"A", "level", "score"}, {"B", "end", "score"}, {"B", "level", "score"}}
	db, logs := openLogged(t, path, fields)
	ctx := context.Background()
	w := shardtest.SQL(t, path)
	// The player with the most numbers of the first two fields.
	var user string
	if err := w.QueryRow(`SELECT user_id FROM event WHERE (application, event_type) IN (VALUES ('A', 'level'), ('B', 'end'))
	AND CASE WHEN json_valid(value) THEN json_type(value, '$."score"') END IN ('integer', 'real') GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1`).Scan(&user); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE stats_value_num SET numbers = NULL WHERE application = 'A' AND event_type = 'level' AND field = 'score'`,
		`DELETE FROM stats_value_num WHERE application = 'B' AND event_type = 'end' AND field = 'score'`,
	} {
		if res, err := w.Exec(q); err != nil {
			t.Fatal(err)
		} else if n, _ := res.RowsAffected(); n == 0 {
			t.Fatalf("%s: no row changed", q)
		}
	}

	n, err := db.Erase(ctx, user, "")
	if err != nil || n == 0 {
		t.Fatalf("erase %s: %d rows, %v; want its rows erased", user, n, err)
	}
	var left int
	if err := w.QueryRow(`SELECT count(*) FROM event WHERE user_id = ?`, user).Scan(&left); err != nil || left != 0 {
		t.Fatalf("rows of the erased player left: %d, %v", left, err)
	}
	log := logs.String()
	for _, f := range fields[:2] {
		want := fmt.Sprintf("application=%s event_type=%s field=%s", f[0], f[1], f[2])
		if !strings.Contains(log, "level=WARN") || !strings.Contains(log, want) {
			t.Errorf("log %q: want a warning with %q", log, want)
		}
	}
	if strings.Contains(log, "B event_type=level") || strings.Contains(log, "user_id") || strings.Contains(log, user+" ") {
		t.Errorf("log %q: names the intact field or the player", log)
	}

	if err := db.Summarize(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	shardtest.CheckSummaries(t, path)
	var complete int
	if err := w.QueryRow(`SELECT count(*) FROM stats_value_field JOIN stats_state USING (built_id)`).Scan(&complete); err != nil || complete != 3 {
		t.Fatalf("complete fields %d, %v; want 3", complete, err)
	}
	checkpoint(t, path)
	sum, raw := querytest.OpenReadOnly(t, path), querytest.OpenReadOnly(t, querytest.WithoutSummaries(t, path))
	before := query.ValueFromFields()
	for _, k := range fields {
		f := query.Filter{Application: k[0], EventType: k[1], Since: day("2026-10-01"), Until: day("2026-10-20")}
		sameValue(t, fmt.Sprint(k), sum, raw, f, k[2])
	}
	if n := query.ValueFromFields() - before; n != int64(len(fields)) {
		t.Errorf("%d of %d reads from the registry", n, len(fields))
	}
}

// TestValueFields_BadPath hand-edits a registered field's JSON path into
// one SQLite refuses: an erasure must still succeed (the field is dropped
// with its numbers, a warning names it) and so must the next start with
// another such path; the other fields are kept and the summaries stay
// equal to the raw rows.
func TestValueFields_BadPath(t *testing.T) {
	path := registryDataset(t, 13, 500)
	fields := [][3]string{{"A", "level", "score"}, {"B", "end", "score"}, {"B", "level", "score"}}
	db, logs := openLogged(t, path, fields)
	ctx := context.Background()
	w := shardtest.SQL(t, path)
	registry := func() string {
		t.Helper()
		var s string
		if err := w.QueryRow(`SELECT group_concat(application || ' ' || event_type || ' ' || field, ', ')
FROM (SELECT * FROM stats_value_field ORDER BY 1, 2, 3)`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	badPath := func(application, eventType string) {
		t.Helper()
		if _, err := w.Exec(`UPDATE stats_value_field SET path = 'score' WHERE application = ? AND event_type = ?`, application, eventType); err != nil {
			t.Fatal(err)
		}
	}
	badPath("A", "level")
	if n, err := db.Erase(ctx, "u1", ""); err != nil || n == 0 {
		t.Fatalf("erase u1: %d rows, %v; want its rows erased", n, err)
	}
	if got, want := registry(), "B end score, B level score"; got != want {
		t.Errorf("registry after the erasure %q, want %q", got, want)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	badPath("B", "end")
	db = shardtest.Open(t, path, shard.Options{})
	if got, want := registry(), "B level score"; got != want {
		t.Errorf("registry after a start %q, want %q", got, want)
	}
	if err := db.Summarize(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	shardtest.CheckSummaries(t, path)
	if log := logs.String(); !strings.Contains(log, "level=WARN") || !strings.Contains(log, "application=A event_type=level field=score") {
		t.Errorf("log %q: want a warning naming the dropped field", log)
	}
	var left int
	if err := w.QueryRow(`SELECT count(*) FROM event WHERE user_id = 'u1'`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("rows of the erased player left: %d, %v", left, err)
	}
}
