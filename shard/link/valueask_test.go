package link_test

import (
	"bufio"
	"database/sql"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/link"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

// countingDB is the writer with its value asks counted.
type countingDB struct {
	*shard.DB
	asks atomic.Int64
}

func (c *countingDB) AskValueField(application, eventType, field, path string) {
	c.asks.Add(1)
	c.DB.AskValueField(application, eventType, field, path)
}

// registered is the registry's rows, "application|event_type|field|path"
// joined by newlines in key order.
func registered(t *testing.T, db *sql.DB) string {
	t.Helper()
	var s sql.NullString
	if err := db.QueryRow(`SELECT group_concat(application || '|' || event_type || '|' || field || '|' || path, char(10))
FROM (SELECT * FROM stats_value_field ORDER BY application, event_type, field)`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s.String
}

// waitRegistered polls the registry until it reads want.
func waitRegistered(t *testing.T, db *sql.DB, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for got := registered(t, db); got != want; got = registered(t, db) {
		if time.Now().After(deadline) {
			t.Fatalf("registry:\n%s\nwant:\n%s", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestClient_AskValueField: a worker's asks reach the writer's registry;
// the same triple asked again within AskValueEvery is sent once, and
// asking never waits for the writer.
func TestClient_AskValueField(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	db := &countingDB{DB: shardtest.Open(t, path, shard.Options{})}
	sup, wrk := socketpair(t)
	go link.Serve(sup, db, link.Handlers{})
	l, err := link.Dial(wrk, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Write(0, []shard.Event{shardtest.Event(1)}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		l.AskValueField("app", "level_end", "stats.score", `$."stats"."score"`)
	}
	l.AskValueField("app", "level_end", "stats.time", `$."stats"."time"`)
	waitRegistered(t, shardtest.SQL(t, path), `app|level_end|stats.score|$."stats"."score"`+"\n"+`app|level_end|stats.time|$."stats"."time"`)
	// The writer got them in order: the second triple came after every
	// copy of the first that was sent.
	if n := db.asks.Load(); n != 2 {
		t.Errorf("the writer got %d asks, want 2 (the same triple once)", n)
	}
}

// TestClient_AskValueFieldStuck: with a writer that answers the hello and
// then neither reads nor answers, asks never block (the queue drops them),
// nor once the link is down.
func TestClient_AskValueFieldStuck(t *testing.T) {
	sup, wrk := socketpair(t)
	go func() {
		r := bufio.NewReader(sup)
		if _, _, err := link.ReadFrame(r, nil, link.MaxFrameBytes); err != nil {
			t.Errorf("read hello: %v", err)
		}
		sup.Write(link.Frame{Type: link.FrameWelcome, Payload: []byte{link.Version}}.Append(nil))
	}()
	l, err := link.Dial(wrk, 1)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", link.MaxValueAskBytes)
	for i := range 2000 {
		l.AskValueField("app", "type", fmt.Sprint("f", i), long)
	}
	l.Close()
	<-l.Done()
	l.AskValueField("app", "type", "after", `$."after"`)
}

// rawWorker says hello over conn as a worker of this version and reads the
// welcome: a peer that writes any frame it likes.
func rawWorker(t *testing.T, conn interface {
	Write([]byte) (int, error)
}, r *bufio.Reader) {
	t.Helper()
	hello := append([]byte("gocolytics-link"), link.Version, 1)
	if _, err := conn.Write(link.Frame{Type: link.FrameHello, Payload: hello}.Append(nil)); err != nil {
		t.Fatal(err)
	}
	if f, _, err := link.ReadFrame(r, nil, link.MaxFrameBytes); err != nil || f.Type != link.FrameWelcome {
		t.Fatalf("welcome: %+v, %v", f, err)
	}
}

// askPayload is a FrameValueAsk's payload of the strings s.
func askPayload(s ...string) []byte {
	var b []byte
	for _, x := range s {
		b = binary.AppendUvarint(b, uint64(len(x)))
		b = append(b, x...)
	}
	return b
}

// TestServe_ValueAskMalformed: malformed and out-of-bound asks are refused
// one by one while the link goes on serving (later asks and writes); a
// path SQLite does not take passes the link and is dropped by the writer,
// and a writer without a registry refuses every ask.
func TestServe_ValueAskMalformed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	db := shardtest.Open(t, path, shard.Options{})
	sup, wrk := socketpair(t)
	served := make(chan error, 1)
	go func() { served <- link.Serve(sup, db, link.Handlers{}) }()
	r := bufio.NewReader(wrk)
	rawWorker(t, wrk, r)

	good := askPayload("app", "level_end", "stats.score", `$."stats"."score"`)
	cases := []struct {
		name    string
		payload []byte
		want    byte
	}{
		{"empty", nil, 0},
		{"truncated", good[:len(good)-3], 0},
		{"length past the end", append([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, "app"...), 0},
		{"three strings", askPayload("app", "level_end", "stats.score"), 0},
		{"trailing bytes", append(askPayload("app", "level_end", "stats.score", `$."stats"."score"`), 'x'), 0},
		{"empty field", askPayload("app", "level_end", "", `$.""`), 0},
		{"long application", askPayload(strings.Repeat("a", link.MaxValueAskBytes+1), "level_end", "x", `$."x"`), 0},
		{"long path", askPayload("app", "level_end", "x", `$."`+strings.Repeat("x", link.MaxValueAskBytes)+`"`), 0},
		{"not UTF-8", askPayload("app\xff", "level_end", "x", `$."x"`), 0},
		{"bad path", askPayload("app", "level_end", "bad", `$.[`), 1},
		{"good", good, 1},
	}
	var b []byte
	for i, c := range cases {
		b = link.Frame{Type: link.FrameValueAsk, ID: uint64(100 + i), Payload: c.payload}.Append(b)
	}
	b = link.Frame{Type: link.FrameWrite, ID: 7, Payload: link.AppendEvents(nil, 0, []shard.Event{shardtest.Event(1)})}.Append(b)
	if _, err := wrk.Write(b); err != nil {
		t.Fatal(err)
	}
	for range len(cases) + 1 {
		f, _, err := link.ReadFrame(r, nil, link.MaxFrameBytes)
		if err != nil {
			t.Fatalf("reply: %v", err)
		}
		if f.Type == link.FrameResult {
			if f.ID != 7 || f.Payload[0] != 0 {
				t.Errorf("write after the asks: %+v, want id 7 committed", f)
			}
			continue
		}
		i := int(f.ID) - 100
		if f.Type != link.FrameValueAsked || i < 0 || i >= len(cases) || len(f.Payload) != 1 {
			t.Fatalf("reply %+v, want a value ask's outcome", f)
		}
		if f.Payload[0] != cases[i].want {
			t.Errorf("%s: outcome %d, want %d", cases[i].name, f.Payload[0], cases[i].want)
		}
	}
	// The writer handles asks in order: the bad path came before the good.
	waitRegistered(t, shardtest.SQL(t, path), `app|level_end|stats.score|$."stats"."score"`)
	select {
	case err := <-served:
		t.Fatalf("Serve returned: %v", err)
	default:
	}

	// A writer without a registry.
	sup2, wrk2 := socketpair(t)
	go link.Serve(sup2, struct{ link.Writer }{db}, link.Handlers{})
	r2 := bufio.NewReader(wrk2)
	rawWorker(t, wrk2, r2)
	if _, err := wrk2.Write(link.Frame{Type: link.FrameValueAsk, ID: 1, Payload: good}.Append(nil)); err != nil {
		t.Fatal(err)
	}
	if f, _, err := link.ReadFrame(r2, nil, link.MaxFrameBytes); err != nil || f.Type != link.FrameValueAsked || string(f.Payload) != "\x00" {
		t.Errorf("a writer without a registry: %+v, %v; want refused", f, err)
	}
}
