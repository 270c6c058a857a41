package forward_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/forward"
	"github.com/gocolytics/gocolytics/shard/forward/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// syncBuffer is a log destination tests read while the forwarder writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// openNode is one SQLite database with its writer, as a gocolytics node
// has. Rows go through the staging table as in production, but are merged
// into event (which the forwarder reads) within a quarter second instead of
// the quiet-time 5 s.
func openNode(t *testing.T) *shard.DB {
	t.Helper()
	db := shard.New(filepath.Join(t.TempDir(), "node.db"), shard.Options{MergeInterval: 50 * time.Millisecond}, nil)
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func event(i int, value string) shard.Event {
	return shard.Event{EventType: "level_end", Application: "game", Version: "1.0", Platform: "linux",
		UserID: fmt.Sprintf("u%d", i%50), SessionID: fmt.Sprintf("s%d", i%200), Value: value,
		Time: time.Date(2026, 11, 30, 1, 2, 3, 456789000, time.UTC)}
}

func write(t *testing.T, db *shard.DB, from, n int) {
	t.Helper()
	evs := make([]shard.Event, n)
	for i := range evs {
		evs[i] = event(from+i, fmt.Sprintf(`{"score":%d}`, from+i))
	}
	if err := db.Write(0, evs); err != nil {
		t.Fatal(err)
	}
}

// startForwarder starts a forwarder that polls every 50 ms and retries
// after 20 ms to 200 ms instead of 1 s to 10 s.
func startForwarder(t *testing.T, cfg forward.Config, log *syncBuffer) *forward.Forwarder {
	t.Helper()
	if cfg.Interval == 0 {
		cfg.Interval = 50 * time.Millisecond
	}
	f := forward.New(forward.WithBackoff(cfg, 20*time.Millisecond, 200*time.Millisecond), slog.New(slog.NewTextHandler(log, nil)))
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// waitPosition waits until the forwarder has forwarded every id up to want.
func waitPosition(t *testing.T, f *forward.Forwarder, want int64, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if s := f.Status(); s.Position >= want && s.LagEvents == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("position %+v, want %d", f.Status(), want)
}

// waitBehind waits until the forwarder says it is behind for a reason
// holding want, and returns that error.
func waitBehind(t *testing.T, f *forward.Forwarder, want string) error {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := f.Behind(); err != nil && strings.Contains(err.Error(), want) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	err := f.Behind()
	t.Errorf("Behind() = %v, want an error saying %q", err, want)
	return err
}

func checkExactlyOnce(t *testing.T, got map[int64]int, n int) {
	t.Helper()
	if len(got) != n {
		t.Errorf("got %d distinct rows, want %d", len(got), n)
	}
	for id := int64(1); id <= int64(n); id++ {
		if got[id] != 1 {
			t.Errorf("src_id %d is in postgresql %d times, want 1", id, got[id])
		}
	}
}

func TestForwarder_ExactlyOnce(t *testing.T) {
	t.Parallel()
	srv := pgtest.Shared(t)
	url := srv.CreateDB(t, "exactly_once")
	db := openNode(t)
	write(t, db, 1, 500)
	var log syncBuffer
	f := startForwarder(t, forward.Config{SQLitePath: db.Path(), PostgresURL: url, NodeID: "node-a", BatchRows: 128}, &log)
	for i := 501; i <= 3000; i += 100 {
		write(t, db, i, 100)
	}
	waitPosition(t, f, 3000, 30*time.Second)
	c := srv.Conn(t, "exactly_once")
	checkExactlyOnce(t, pgtest.NodeRows(t, c, "node-a"), 3000)

	var user, value string
	var tm time.Time
	if err := c.QueryRow(context.Background(), "SELECT user_id, value::text, time FROM event WHERE node_id = 'node-a' AND src_id = 77").Scan(&user, &value, &tm); err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 11, 30, 1, 2, 3, 456789000, time.UTC); user != "u27" || value != `{"score": 77}` || !tm.Equal(want) {
		t.Errorf("row 77: got %q %s %s, want u27 {\"score\": 77} %s", user, value, tm, want)
	}
	if s := f.Status(); s.Forwarded != 3000 || !s.Connected || s.LagSeconds != 0 {
		t.Errorf("status %+v, want 3000 forwarded, connected, no lag", s)
	}
	if strings.Contains(log.String(), pgtest.Password) {
		t.Errorf("the log holds the password:\n%s", log.String())
	}
}

func TestForwarder_RestartResumes(t *testing.T) {
	t.Parallel()
	srv := pgtest.Shared(t)
	url := srv.CreateDB(t, "restart")
	db := openNode(t)
	write(t, db, 1, 1000)
	var log syncBuffer
	cfg := forward.Config{SQLitePath: db.Path(), PostgresURL: url, NodeID: "node-r", BatchRows: 100}
	f := startForwarder(t, cfg, &log)
	waitPosition(t, f, 1000, 30*time.Second)
	f.Close()
	write(t, db, 1001, 1000)
	f = startForwarder(t, cfg, &log)
	waitPosition(t, f, 2000, 30*time.Second)
	checkExactlyOnce(t, pgtest.NodeRows(t, srv.Conn(t, "restart"), "node-r"), 2000)
	if got := f.Status().Forwarded; got != 1000 {
		t.Errorf("the restarted forwarder copied %d rows, want the 1000 new ones", got)
	}
}

func TestForwarder_ConnectionCutMidCopy(t *testing.T) {
	t.Parallel()
	srv := pgtest.Shared(t)
	srv.CreateDB(t, "cut")
	proxy := pgtest.NewProxy(t, srv.Addr())
	url := strings.Replace(srv.URL("cut"), srv.Addr(), proxy.Addr(), 1)
	db := openNode(t)
	write(t, db, 1, 20000)
	var log syncBuffer
	f := startForwarder(t, forward.Config{SQLitePath: db.Path(), PostgresURL: url, NodeID: "node-c", BatchRows: 2000}, &log)
	// Cut the connections several times, each time part way into a
	// batch's COPY (a batch of 2000 rows is ~150 KB on the wire) at a
	// different point, so that with two batches in flight (one copying, one
	// committing) the cuts meet each step of both.
	for i := range 6 {
		proxy.CutAfter(int64(20_000 + i*37_000))
		deadline := time.Now().Add(20 * time.Second)
		for proxy.Cuts.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		proxy.Cuts.Store(0)
	}
	waitPosition(t, f, 20000, 60*time.Second)
	checkExactlyOnce(t, pgtest.NodeRows(t, srv.Conn(t, "cut"), "node-c"), 20000)
	if f.Status().Errors < 3 {
		t.Errorf("errors %d: the cuts did not interrupt the forwarder", f.Status().Errors)
	}
	if strings.Contains(log.String(), pgtest.Password) {
		t.Errorf("the log holds the password")
	}
}

func TestForwarder_Values(t *testing.T) {
	t.Parallel()
	srv := pgtest.Shared(t)
	url := srv.CreateDB(t, "vals")
	db := openNode(t)
	deep := strings.Repeat(`{"a":`, 60) + "1" + strings.Repeat("}", 60)
	cases := []struct {
		stored    string
		wantValue string // value::text in PostgreSQL
		wantText  string // value_text, "" for NULL
	}{
		{`{"score":12,"name":"Zoë 🎮"}`, `{"name": "Zoë 🎮", "score": 12}`, ""},
		{`{"big":1e99999}`, `{"big": "1e99999"}`, `{"big":1e99999}`},
		{`{"tiny":-1e-99999,"ok":1.5}`, `{"ok": 1.5, "tiny": "-1e-99999"}`, `{"tiny":-1e-99999,"ok":1.5}`},
		{`{"s":"a\u0000b"}`, `{"s": "a` + "\uFFFD" + `b"}`, `{"s":"a\u0000b"}`},
		{`{"k\\u0000":"escaped backslash, not NUL"}`, `{"k\\u0000": "escaped backslash, not NUL"}`, ""},
		{deep, strings.Repeat(`{"a": `, 60) + "1" + strings.Repeat("}", 60), ""},
		{`{"x":null,"l":[1,"two",true,{"y":1e300}]}`, `{"l": [1, "two", true, {"y": 1` + strings.Repeat("0", 300) + `}], "x": null}`, ""},
	}
	evs := make([]shard.Event, len(cases))
	for i, c := range cases {
		evs[i] = event(i, c.stored)
	}
	evs[0].UserID = "nul\x00user"
	if err := db.Write(0, evs); err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	f := startForwarder(t, forward.Config{SQLitePath: db.Path(), PostgresURL: url, NodeID: "node-v"}, &log)
	waitPosition(t, f, int64(len(cases)), 30*time.Second)
	c := srv.Conn(t, "vals")
	for i, tc := range cases {
		var value string
		var text *string
		if err := c.QueryRow(context.Background(), "SELECT value::text, value_text FROM event WHERE src_id = $1", i+1).Scan(&value, &text); err != nil {
			t.Fatal(err)
		}
		gotText := ""
		if text != nil {
			gotText = *text
		}
		if value != tc.wantValue || gotText != tc.wantText {
			t.Errorf("stored %.80s:\n got value %.200s text %q\nwant value %.200s text %q", tc.stored, value, gotText, tc.wantValue, tc.wantText)
		}
	}
	var user string
	if err := c.QueryRow(context.Background(), "SELECT user_id FROM event WHERE src_id = 1").Scan(&user); err != nil {
		t.Fatal(err)
	}
	if user != "nul\uFFFDuser" {
		t.Errorf("user_id %q, want NUL as U+FFFD", user)
	}
	if got := f.Status().Converted; got != 4 {
		t.Errorf("converted %d rows, want 4", got)
	}
}

func TestForwarder_NodeIDInUse(t *testing.T) {
	t.Parallel()
	srv := pgtest.Shared(t)
	url := srv.CreateDB(t, "inuse")
	a, b := openNode(t), openNode(t)
	write(t, a, 1, 10)
	evs := make([]shard.Event, 10)
	for i := range evs {
		evs[i] = event(i, "{}")
		evs[i].Time = evs[i].Time.Add(time.Hour) // another node's rows
	}
	if err := b.Write(0, evs); err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	fa := startForwarder(t, forward.Config{SQLitePath: a.Path(), PostgresURL: url, NodeID: "same"}, &log)
	waitPosition(t, fa, 10, 30*time.Second)
	fb := startForwarder(t, forward.Config{SQLitePath: b.Path(), PostgresURL: url, NodeID: "same"}, &log)
	waitBehind(t, fb, "another process is forwarding with this NODE_ID")
	fa.Close()
	// With the first one gone, the second sees that the position belongs to
	// another database (row 10's time differs) and still refuses.
	write(t, b, 11, 1)
	waitBehind(t, fb, "another SQLite database")
	if got := len(pgtest.NodeRows(t, srv.Conn(t, "inuse"), "same")); got != 10 {
		t.Errorf("%d rows for NODE_ID same, want the first node's 10", got)
	}
}

// TestForwarder_MigratesOlderVersions: a database an older build created
// and filled (versions 1 and 2) is taken to the current schema at
// connection, keeping its rows: the text columns then compare byte by byte,
// as SQLite does (version 2), and exports page through an index on id
// (version 3).
func TestForwarder_MigratesOlderVersions(t *testing.T) {
	t.Parallel()
	srv := pgtest.Shared(t)
	for from := 1; from < forward.SchemaVersion; from++ {
		t.Run(fmt.Sprintf("version%d", from), func(t *testing.T) {
			name := fmt.Sprintf("migrate_v%d", from)
			url := srv.CreateDB(t, name)
			c := srv.Conn(t, name)
			ctx := context.Background()
			for v := 1; v <= from; v++ {
				if _, err := c.Exec(ctx, forward.Migration(v)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := c.Exec(ctx, fmt.Sprintf(`CREATE TABLE gocolytics_schema (one boolean PRIMARY KEY DEFAULT true CHECK (one), version integer NOT NULL);
		INSERT INTO gocolytics_schema (version) VALUES (%d);
		CREATE TABLE event_y2026m11 PARTITION OF event FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
		INSERT INTO event (event_type, application, version, platform, user_id, session_id, value, time, node_id, src_id)
		VALUES ('t', 'Zebra', '1', 'p', 'u', 's', '{}', '2026-11-30 00:00:00', 'old-node', 1)`, from)); err != nil {
				t.Fatal(err)
			}
			db := openNode(t)
			write(t, db, 1, 10)
			var log syncBuffer
			f := startForwarder(t, forward.Config{SQLitePath: db.Path(), PostgresURL: url, NodeID: "node-m"}, &log)
			waitPosition(t, f, 10, 30*time.Second)
			var version int
			var collations, apps, idIndex string
			if err := c.QueryRow(ctx, "SELECT version FROM gocolytics_schema").Scan(&version); err != nil {
				t.Fatal(err)
			}
			if err := c.QueryRow(ctx, `SELECT string_agg(a.attname || '=' || coalesce(co.collname, '-'), ',' ORDER BY a.attnum)
		FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation
		WHERE a.attrelid = 'event_y2026m11'::regclass AND a.attnum > 0 AND a.atttypid = 'text'::regtype`).Scan(&collations); err != nil {
				t.Fatal(err)
			}
			if err := c.QueryRow(ctx, "SELECT string_agg(DISTINCT application, ',' ORDER BY application) FROM event").Scan(&apps); err != nil {
				t.Fatal(err)
			}
			if err := c.QueryRow(ctx, `SELECT coalesce(string_agg(indexdef, '; '), '') FROM pg_indexes
		WHERE tablename = 'event_y2026m11' AND indexdef LIKE '%USING btree (id)'`).Scan(&idIndex); err != nil {
				t.Fatal(err)
			}
			const want = "event_type=C,application=C,version=C,platform=C,user_id=C,session_id=C,node_id=C,value_text=default"
			if version != forward.SchemaVersion || collations != want || apps != "Zebra,game" || idIndex == "" {
				t.Errorf("after migration: version %d, collations %s, applications %q, index on id %q; want %d, %s, \"Zebra,game\" (byte order, the old row kept), an index",
					version, collations, apps, idIndex, forward.SchemaVersion, want)
			}
			// An export's page reads through that index, not a sort of the table.
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			var plan strings.Builder
			if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off"); err != nil {
				t.Fatal(err)
			}
			rows, err := tx.Query(ctx, "EXPLAIN SELECT id FROM event WHERE id > 3 ORDER BY id LIMIT 2000")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var line string
				rows.Scan(&line)
				plan.WriteString(line + "\n")
			}
			if p := plan.String(); !strings.Contains(p, "Index") || strings.Contains(p, "Seq Scan") || strings.Contains(p, "Sort  (") {
				t.Errorf("an export page is planned without the index on id:\n%s", p)
			}
			checkExactlyOnce(t, pgtest.NodeRows(t, c, "node-m"), 10)
		})
	}
}

func TestForwarder_RefusesNewerSchema(t *testing.T) {
	t.Parallel()
	srv := pgtest.Shared(t)
	url := srv.CreateDB(t, "newer")
	c := srv.Conn(t, "newer")
	if _, err := c.Exec(context.Background(), "CREATE TABLE gocolytics_schema (one boolean PRIMARY KEY DEFAULT true, version integer NOT NULL); INSERT INTO gocolytics_schema (version) VALUES (99)"); err != nil {
		t.Fatal(err)
	}
	db := openNode(t)
	write(t, db, 1, 3)
	var log syncBuffer
	f := startForwarder(t, forward.Config{SQLitePath: db.Path(), PostgresURL: url, NodeID: "n"}, &log)
	waitBehind(t, f, "schema is newer")
	var tables int
	c.QueryRow(context.Background(), "SELECT count(*) FROM pg_tables WHERE tablename = 'event'").Scan(&tables)
	if tables != 0 {
		t.Errorf("the event table was created in a newer-schema database")
	}
}

func TestForwarder_WrongPasswordRedacted(t *testing.T) {
	t.Parallel()
	srv := pgtest.Shared(t)
	db := openNode(t)
	const wrong = "wrong-Pa55word-zz"
	url := strings.Replace(srv.URL("postgres"), pgtest.Password, wrong, 1)
	var log syncBuffer
	f := startForwarder(t, forward.Config{SQLitePath: db.Path(), PostgresURL: url, NodeID: "n"}, &log)
	err := waitBehind(t, f, "password authentication failed")
	for _, s := range []string{log.String(), fmt.Sprint(err)} {
		if strings.Contains(s, wrong) {
			t.Errorf("the password shows: %s", s)
		}
	}
	for _, u := range []string{"postgres://u:" + wrong + "@127.0.0.1:1/x?sslmode=bogus", "host=127.0.0.1 password='" + wrong + "' sslmode=bogus"} {
		err := forward.Config{PostgresURL: u, NodeID: "n"}.Validate()
		if err == nil || strings.Contains(err.Error(), wrong) {
			t.Errorf("Validate(%q) = %v, want an error without the password", u, err)
		}
	}
}

// TestForwarder_IDsReused erases the newest rows after they were forwarded;
// SQLite then gives new rows the same ids (max(id)+1), and the forwarder
// must go back for them rather than skip them.
func TestForwarder_IDsReused(t *testing.T) {
	t.Parallel()
	srv := pgtest.Shared(t)
	url := srv.CreateDB(t, "reuse")
	db := openNode(t)
	evs := make([]shard.Event, 10)
	for i := range evs {
		evs[i] = event(i, `{"old":true}`)
		if i >= 7 {
			evs[i].UserID = "leaver"
		}
	}
	if err := db.Write(0, evs); err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	f := startForwarder(t, forward.Config{SQLitePath: db.Path(), PostgresURL: url, NodeID: "node-reuse"}, &log)
	waitPosition(t, f, 10, 30*time.Second)
	for _, fresh := range []int{2, 5} { // first below the position, then past it
		if _, err := db.Erase(context.Background(), "leaver", ""); err != nil {
			t.Fatal(err)
		}
		now := make([]shard.Event, fresh)
		for i := range now {
			now[i] = event(i, fmt.Sprintf(`{"fresh":%d}`, fresh))
			now[i].Time = time.Now().UTC()
			now[i].UserID = "leaver"
		}
		if err := db.Write(0, now); err != nil {
			t.Fatal(err)
		}
	}
	// ids: 1-7 old; 8-9 got {"fresh":2} and were erased; 8-12 got {"fresh":5}.
	c := srv.Conn(t, "reuse")
	deadline := time.Now().Add(30 * time.Second)
	var n5 int
	for time.Now().Before(deadline) && n5 < 5 {
		c.QueryRow(context.Background(), `SELECT count(*) FROM event WHERE value = '{"fresh":5}'`).Scan(&n5)
		time.Sleep(50 * time.Millisecond)
	}
	var old, n2 int
	c.QueryRow(context.Background(), `SELECT count(*) FROM event WHERE value = '{"old":true}'`).Scan(&old)
	c.QueryRow(context.Background(), `SELECT count(*) FROM event WHERE value = '{"fresh":2}'`).Scan(&n2)
	if old != 10 || n5 != 5 {
		t.Errorf("postgresql has %d old rows and %d of the 5 rows written after the erasure, want 10 and 5 (%d of the erased ones)\n%s", old, n5, n2, log.String())
	}
}

// TestForwarder_Erase: with AfterErase set to the forwarder's Erase, erasing
// a player deletes their rows in PostgreSQL too, from every node, and rows
// written before the erasure never arrive afterwards.
func TestForwarder_Erase(t *testing.T) {
	t.Parallel()
	srv := pgtest.Shared(t)
	url := srv.CreateDB(t, "erase")
	c := srv.Conn(t, "erase")
	if _, err := c.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	db := openNode(t)
	var log syncBuffer
	f := startForwarder(t, forward.Config{SQLitePath: db.Path(), PostgresURL: url, NodeID: "node-e", BatchRows: 50}, &log)
	db.AfterErase = f.Erase
	evs := make([]shard.Event, 400)
	for i := range evs {
		evs[i] = event(i, "{}")
		if i%4 == 0 {
			evs[i].UserID = "leaver"
		}
	}
	if err := db.Write(0, evs[:200]); err != nil {
		t.Fatal(err)
	}
	waitPosition(t, f, 200, 30*time.Second)
	// Another node's rows of the same player go too.
	if _, err := c.Exec(context.Background(), `INSERT INTO event (event_type, application, version, platform, user_id, session_id, value, time, node_id, src_id)
		VALUES ('t', 'game', '1', 'p', 'leaver', 's', '{}', '2026-11-30 01:00:00', 'other-node', 1)`); err != nil {
		t.Fatal(err)
	}
	if err := db.Write(0, evs[200:]); err != nil { // not all forwarded yet
		t.Fatal(err)
	}
	n, err := db.Erase(context.Background(), "leaver", "")
	if err != nil || n != 100 {
		t.Fatalf("Erase: %d, %v; want 100 rows", n, err)
	}
	var left int
	c.QueryRow(context.Background(), "SELECT count(*) FROM event WHERE user_id = 'leaver'").Scan(&left)
	if left != 0 {
		t.Errorf("%d rows of the erased player in postgresql right after Erase", left)
	}
	waitPosition(t, f, 400, 30*time.Second)
	c.QueryRow(context.Background(), "SELECT count(*) FROM event WHERE user_id = 'leaver'").Scan(&left)
	var others int
	c.QueryRow(context.Background(), "SELECT count(*) FROM event WHERE node_id = 'node-e'").Scan(&others)
	if left != 0 || others != 300 {
		t.Errorf("after forwarding the rest: %d rows of the erased player, %d others; want 0 and 300", left, others)
	}
}

// TestForwarder_EraseEventType: an ERASE_EVENT_TYPE row deletes in
// PostgreSQL what it deletes on the node (the player's earlier rows), and
// also the player's rows other nodes sent before it, even when PostgreSQL
// is down at the time: the erasure waits with the row and happens when the
// row is forwarded. Later rows of the player, the erasure event itself and
// other players' rows stay.
func TestForwarder_EraseEventType(t *testing.T) {
	t.Parallel()
	srv := pgtest.Shared(t)
	srv.CreateDB(t, "erase_type")
	c := srv.Conn(t, "erase_type")
	proxy := pgtest.NewProxy(t, srv.Addr())
	url := strings.Replace(srv.URL("erase_type"), srv.Addr(), proxy.Addr(), 1)
	db := shard.New(filepath.Join(t.TempDir(), "node.db"), shard.Options{EraseEventType: "forget_me", MergeInterval: 50 * time.Millisecond}, nil)
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var log syncBuffer
	f := startForwarder(t, forward.Config{SQLitePath: db.Path(), PostgresURL: url, NodeID: "node-t", BatchRows: 64, EraseEventType: "forget_me"}, &log)
	ctx := context.Background()
	player := func(i int, user string) shard.Event {
		e := event(i, "{}")
		e.UserID = user
		return e
	}
	// 200 rows, one in four of the leaver, in PostgreSQL before the erasure.
	evs := make([]shard.Event, 200)
	for i := range evs {
		evs[i] = event(i, "{}")
		if i%4 == 0 {
			evs[i].UserID = "leaver"
		}
	}
	if err := db.Write(0, evs); err != nil {
		t.Fatal(err)
	}
	waitPosition(t, f, 200, 30*time.Second)
	// Rows of the leaver from another node: one before the erasure event
	// (an hour earlier), one after it (an hour later); and one of the
	// leaver in another application.
	if _, err := c.Exec(ctx, `INSERT INTO event (event_type, application, version, platform, user_id, session_id, value, time, node_id, src_id)
		VALUES ('t', 'game', '1', 'p', 'leaver', 's', '{}', '2026-11-30 00:02:03', 'other-node', 1),
		       ('t', 'game', '1', 'p', 'leaver', 's', '{}', '2026-11-30 02:02:03', 'other-node', 2),
		       ('t', 'other-game', '1', 'p', 'leaver', 's', '{}', '2026-11-30 00:02:03', 'other-node', 3)`); err != nil {
		t.Fatal(err)
	}

	// PostgreSQL goes away; the node takes more rows of the leaver, the
	// erasure event (id 221), then rows after it.
	proxy.Refuse(true)
	more := make([]shard.Event, 0, 100)
	for i := 200; i < 220; i++ {
		more = append(more, player(i, "leaver"))
	}
	erase := player(220, "leaver")
	erase.EventType = "forget_me"
	more = append(more, erase)
	for i := 221; i < 300; i++ {
		if i%2 == 0 {
			more = append(more, player(i, "leaver"))
		} else {
			more = append(more, event(i, "{}"))
		}
	}
	if err := db.Write(0, more); err != nil {
		t.Fatal(err)
	}
	waitBehind(t, f, "postgresql")
	var before int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM event WHERE user_id = 'leaver' AND node_id = 'node-t'").Scan(&before); err != nil {
		t.Fatal(err)
	}
	if before != 50 {
		t.Errorf("%d rows of the leaver in postgresql while it was unreachable, want the 50 forwarded before", before)
	}

	proxy.Refuse(false)
	waitPosition(t, f, 300, 60*time.Second)
	got := pgtest.NodeRows(t, c, "node-t")
	for id := int64(1); id <= 300; id++ {
		// The leaver's rows before the erasure event (id 221) are gone;
		// the event itself and the leaver's rows after it stay.
		erased := (id <= 200 && (id-1)%4 == 0) || (id > 200 && id < 221)
		want := 1
		if erased {
			want = 0
		}
		if got[id] != want {
			t.Errorf("src_id %d (erased %v) is in postgresql %d times, want %d", id, erased, got[id], want)
		}
	}
	var others string
	if err := c.QueryRow(ctx, "SELECT string_agg(application || ':' || src_id, ',' ORDER BY src_id) FROM event WHERE node_id = 'other-node'").Scan(&others); err != nil {
		t.Fatal(err)
	}
	if others != "game:2,other-game:3" {
		t.Errorf("other node's rows left: %q, want its later row and the other application's (game:2,other-game:3)", others)
	}
	if !strings.Contains(log.String(), "erased a player's earlier rows in postgresql") {
		t.Errorf("no log line of the erasure in postgresql:\n%s", log.String())
	}

	// Sent again (the position moved back by hand), the erasure deletes
	// nothing it should not, and nothing is duplicated.
	f.Close()
	if _, err := c.Exec(ctx, "UPDATE forward_position SET last_id = 150 WHERE node_id = 'node-t'"); err != nil {
		t.Fatal(err)
	}
	f = startForwarder(t, forward.Config{SQLitePath: db.Path(), PostgresURL: url, NodeID: "node-t", BatchRows: 64, EraseEventType: "forget_me"}, &log)
	waitPosition(t, f, 300, 60*time.Second)
	again := pgtest.NodeRows(t, c, "node-t")
	if len(again) != len(got) {
		t.Errorf("sent again: %d rows, want %d", len(again), len(got))
	}
	for id, n := range got {
		if again[id] != n {
			t.Errorf("sent again: src_id %d is in postgresql %d times, want %d", id, again[id], n)
		}
	}
}

// TestForwarder_Retention: with RetentionDays, whole old months are dropped
// as partitions and the older rows of the boundary month deleted; recent
// rows stay.
func TestForwarder_Retention(t *testing.T) {
	t.Parallel()
	srv := pgtest.Shared(t)
	url := srv.CreateDB(t, "retention")
	c := srv.Conn(t, "retention")
	db := openNode(t)
	now := time.Now().UTC()
	times := []time.Time{time.Date(2020, 5, 1, 12, 0, 0, 0, time.UTC), now.AddDate(0, 0, -31), now.AddDate(0, 0, -29), now}
	evs := make([]shard.Event, len(times))
	for i, tm := range times {
		evs[i] = event(i, "{}")
		evs[i].Time = tm
	}
	if err := db.Write(0, evs); err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	cfg := forward.Config{SQLitePath: db.Path(), PostgresURL: url, NodeID: "node-old", RetentionDays: 30}
	f := startForwarder(t, cfg, &log)
	waitPosition(t, f, 4, 30*time.Second)
	f.Close() // retention runs when a connection starts, then hourly
	f = startForwarder(t, cfg, &log)
	deadline := time.Now().Add(30 * time.Second)
	var n, old int
	for time.Now().Before(deadline) {
		c.QueryRow(context.Background(), "SELECT count(*) FROM event").Scan(&n)
		c.QueryRow(context.Background(), "SELECT count(*) FROM pg_class WHERE relname = 'event_y2020m05'").Scan(&old)
		if n == 2 && old == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n != 2 || old != 0 {
		t.Errorf("%d rows left (want the 2 of the last 30 days), partition of 2020-05 present: %v\n%s", n, old == 1, log.String())
	}
	// The rows go before the session says it is connected: wait for that.
	waitPosition(t, f, 4, 30*time.Second)
	if s := f.Status(); s.Position != 4 || s.Forwarded != 0 {
		t.Errorf("position %d after forwarding %d rows, want 4 and 0 (nothing forwarded again)", s.Position, s.Forwarded)
	}
}
