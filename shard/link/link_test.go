package link_test

import (
	"bufio"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/link"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

// startLink serves db over a socketpair and dials it as worker 3.
func startLink(t *testing.T, db *shard.DB, h link.Handlers) (*link.Client, chan error) {
	t.Helper()
	sup, wrk := socketpair(t)
	served := make(chan error, 1)
	go func() { served <- link.Serve(sup, db, h) }()
	l, err := link.Dial(wrk, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, served
}

// TestClient_Write: concurrent writes through a link are committed, each
// exactly once, and calls and status questions are answered.
func TestClient_Write(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	db := shardtest.Open(t, path, shard.Options{})
	ready := make(chan int, 1)
	l, served := startLink(t, db, link.Handlers{
		Ready: func(w int) { ready <- w },
		Call:  func(p []byte) []byte { return append([]byte("re: "), p...) },
	})
	if w := <-ready; w != 3 {
		t.Errorf("ready: got worker %d, want 3", w)
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				n := g*1000 + i
				if err := l.Write(n, []shard.Event{shardtest.Event(n), shardtest.Event(n + 500)}); err != nil {
					t.Errorf("write %d: %v", n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var rows, distinct int
	shardtest.SQL(t, path).QueryRow("SELECT count(*), count(DISTINCT session_id) FROM event_all").Scan(&rows, &distinct)
	if rows != 1600 || distinct != 1600 {
		t.Errorf("got %d rows (%d distinct), want 1600", rows, distinct)
	}
	if got, err := l.Call([]byte("hi")); err != nil || string(got) != "re: hi" {
		t.Errorf("call: got %q, %v", got, err)
	}
	if err := l.Health(); err != nil {
		t.Errorf("health: %v", err)
	}
	if st := l.Stats(); st.EventsStored != 1600 {
		t.Errorf("stats: got %d stored, want 1600", st.EventsStored)
	}
	l.Close()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// TestClient_WriterErrors: the writer's error reaches the worker with its
// sentinel, and a link whose writer is gone fails with ErrClosed.
func TestClient_WriterErrors(t *testing.T) {
	db := shardtest.Open(t, filepath.Join(t.TempDir(), "events.db"), shard.Options{})
	l, served := startLink(t, db, link.Handlers{})
	db.Close()
	err := l.Write(0, []shard.Event{shardtest.Event(1)})
	if !errors.Is(err, shard.ErrClosed) {
		t.Errorf("write after Close: got %v, want ErrClosed", err)
	}
	if err := l.Health(); !errors.Is(err, shard.ErrClosed) {
		t.Errorf("health after Close: got %v, want ErrClosed", err)
	}
	l.Close()
	<-served
	<-l.Done()
	if err := l.Write(0, []shard.Event{shardtest.Event(1)}); !errors.Is(err, shard.ErrClosed) {
		t.Errorf("write on a closed link: got %v, want ErrClosed", err)
	}
}

// TestClient_WriterGone: a write the writer took and never answered (it
// died between its commit and the result) fails in doubt, not as "not
// stored"; a write after the link went down fails with ErrClosed alone.
func TestClient_WriterGone(t *testing.T) {
	sup, wrk := socketpair(t)
	took := make(chan link.Frame, 1)
	go func() {
		// A writer that says welcome, reads one frame and dies.
		r := bufio.NewReader(sup)
		if _, _, err := link.ReadFrame(r, nil, link.MaxFrameBytes); err != nil {
			t.Errorf("read hello: %v", err)
		}
		sup.Write(link.Frame{Type: link.FrameWelcome, Payload: []byte{link.Version}}.Append(nil))
		f, _, err := link.ReadFrame(r, nil, link.MaxFrameBytes)
		if err != nil {
			t.Errorf("read write: %v", err)
		}
		took <- f
		sup.Close()
	}()
	l, err := link.Dial(wrk, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = l.Write(0, []shard.Event{shardtest.Event(1)})
	if f := <-took; f.Type != link.FrameWrite {
		t.Errorf("the writer got a %q frame, want a write", f.Type)
	}
	if !errors.Is(err, shard.ErrInDoubt) || !errors.Is(err, shard.ErrClosed) {
		t.Errorf("write under way: got %v, want ErrInDoubt and ErrClosed", err)
	}
	<-l.Done()
	err = l.Write(0, []shard.Event{shardtest.Event(2)})
	if !errors.Is(err, shard.ErrClosed) || errors.Is(err, shard.ErrInDoubt) {
		t.Errorf("write after the link went down: got %v, want ErrClosed and not ErrInDoubt", err)
	}
}

// TestServe_WorkerGone: writes a worker sent before it went away are
// still committed (never acknowledged), and Serve returns only then.
func TestServe_WorkerGone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	db := shardtest.Open(t, path, shard.Options{})
	sup, wrk := socketpair(t)
	served := make(chan error, 1)
	go func() { served <- link.Serve(sup, db, link.Handlers{}) }()
	if _, err := link.Dial(wrk, 1); err != nil {
		t.Fatal(err)
	}
	var b []byte
	for i := range 100 {
		b = link.Frame{Type: link.FrameWrite, ID: uint64(i + 1000), Payload: link.AppendEvents(nil, i, []shard.Event{shardtest.Event(i)})}.Append(b)
	}
	if _, err := wrk.Write(b); err != nil {
		t.Fatal(err)
	}
	wrk.Close()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	var rows int
	shardtest.SQL(t, path).QueryRow("SELECT count(*) FROM event_all").Scan(&rows)
	if rows != 100 {
		t.Errorf("got %d rows, want 100", rows)
	}
}
