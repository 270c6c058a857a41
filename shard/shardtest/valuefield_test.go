package shardtest_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

// recorder is a testing.TB that keeps what a check reports instead of
// failing the test that runs it.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

// report runs CheckSummaries on the database at path and returns what it
// reported.
func report(t *testing.T, path string) string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		shardtest.CheckSummaries(r, path)
	}()
	<-done
	return strings.Join(r.errors, "\n")
}

// TestCheckSummaries_ValueNums checks that CheckSummaries finds a field
// registry whose numbers are not those of the raw rows: a number changed,
// an event count changed, a row gone, a row in the wrong pass, a field's
// built_id above the watermark; and finds nothing on the database as the
// writer left it.
func TestCheckSummaries_ValueNums(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.db")
	db := shardtest.Open(t, path, shard.Options{SummaryRows: 40, MergeInterval: -1})
	ctx := context.Background()
	if err := db.RegisterValueField(ctx, "My Game", "level_complete", "i", `$."i"`); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i += 50 {
		var events []shard.Event
		for j := i; j < i+50; j++ {
			e := shardtest.Event(j)
			e.SessionID = "s" // one group a pass
			events = append(events, e)
		}
		if err := db.Write(i, events); err != nil {
			t.Fatal(err)
		}
		if err := db.Summarize(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if got := report(t, path); got != "" {
		t.Fatalf("on the writer's own tables: %s", got)
	}
	var passes int
	if err := shardtest.SQL(t, path).QueryRow("SELECT count(*) FROM stats_value_num WHERE numbers IS NOT NULL").Scan(&passes); err != nil || passes < 2 {
		t.Fatalf("rows of stats_value_num: %d, %v; want one a pass", passes, err)
	}
	// The first pass's row (ids 1 to 40).
	const first = "WHERE pass = (SELECT min(pass) FROM stats_value_num)"
	for _, tc := range []struct{ name, corrupt, want string }{
		{"a number", `UPDATE stats_value_num SET numbers = replace(numbers, '17', '71') ` + first, `stats_value_num: 1 groups differ`},
		{"a number gone", `UPDATE stats_value_num SET numbers = substr(numbers, instr(numbers, ',') + 1) ` + first, `stats_value_num: 1 groups differ`},
		{"an event count", `UPDATE stats_value_num SET events = events + 1 ` + first, `stats_value_num: 1 groups differ`},
		{"a row", `DELETE FROM stats_value_num ` + first, `missing, raw rows give events 40, 40 numbers`},
		{"a pass", `UPDATE stats_value_num SET pass = 1000 ` + first, `stats_value_num by pass: 2 groups differ`},
		{"built_id", `UPDATE stats_value_field SET built_id = built_id + 1`, `built_id 201 above the summaries' watermark 200`},
		{"a field", `UPDATE stats_value_num SET field = 'j' ` + first, `stats_value_num: 2 groups differ`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "events.db")
			if _, err := shardtest.SQL(t, path).Exec("VACUUM INTO ?", p); err != nil {
				t.Fatal(err)
			}
			res, err := shardtest.SQL(t, p).Exec(tc.corrupt)
			if err != nil {
				t.Fatal(err)
			}
			if n, _ := res.RowsAffected(); n != 1 {
				t.Fatalf("%d rows changed, want 1", n)
			}
			got := report(t, p)
			if !strings.Contains(got, tc.want) {
				t.Errorf("CheckSummaries said %q; want %q", got, tc.want)
			}
		})
	}
}
