package link_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/link"
	"github.com/gocolytics/gocolytics/shard/shardtest"
)

func TestAppendEvents_RoundTrip(t *testing.T) {
	events := []shard.Event{shardtest.Event(1), shardtest.Event(2), {Value: "{}", Time: time.Unix(0, -5)}}
	events[1].Application = "ünïcode \x00 bytes"
	events[1].Time = time.Unix(1_800_000_000, 123456789)
	p := link.AppendEvents(nil, 7, events)
	hint, got, err := link.DecodeEvents(p)
	if err != nil {
		t.Fatal(err)
	}
	if hint != 7 {
		t.Errorf("hint: got %d, want 7", hint)
	}
	if len(got) != len(events) {
		t.Fatalf("got %d events, want %d", len(got), len(events))
	}
	for i := range events {
		if !got[i].Time.Equal(events[i].Time) {
			t.Errorf("event %d time: got %v, want %v", i, got[i].Time, events[i].Time)
		}
		got[i].Time, events[i].Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(got[i], events[i]) {
			t.Errorf("event %d: got %+v, want %+v", i, got[i], events[i])
		}
	}
	// Every strict prefix is refused.
	for n := range len(p) {
		if _, _, err := link.DecodeEvents(p[:n]); !errors.Is(err, link.ErrBadFrame) {
			t.Fatalf("prefix of %d bytes: got %v, want ErrBadFrame", n, err)
		}
	}
	if _, _, err := link.DecodeEvents(append(p, 0)); !errors.Is(err, link.ErrBadFrame) {
		t.Errorf("trailing byte: got %v, want ErrBadFrame", err)
	}
}

func TestReadFrame(t *testing.T) {
	f := link.Frame{Type: link.FrameCall, ID: 1<<40 + 3, Payload: []byte("question")}
	b := f.Append(nil)
	b = link.Frame{Type: link.FrameStatus, ID: 9}.Append(b)
	r := bytes.NewReader(b)
	got, buf, err := link.ReadFrame(r, nil, link.MaxFrameBytes)
	if err != nil || got.Type != f.Type || got.ID != f.ID || string(got.Payload) != "question" {
		t.Fatalf("got %+v, %v; want %+v", got, err, f)
	}
	got, _, err = link.ReadFrame(r, buf, link.MaxFrameBytes)
	if err != nil || got.Type != link.FrameStatus || got.ID != 9 || len(got.Payload) != 0 {
		t.Fatalf("second frame: got %+v, %v", got, err)
	}
	if _, _, err := link.ReadFrame(r, buf, link.MaxFrameBytes); err != io.EOF {
		t.Errorf("at the end: got %v, want io.EOF", err)
	}

	tests := map[string][]byte{
		"truncated header":  b[:7],
		"truncated payload": f.Append(nil)[:len(f.Append(nil))-1],
		"short length":      {0, 0, 0, 3, 'C', 1, 2},
		"too long":          binary.BigEndian.AppendUint32(nil, 1<<30),
	}
	for name, in := range tests {
		_, _, err := link.ReadFrame(bytes.NewReader(in), nil, link.MaxFrameBytes)
		if !errors.Is(err, link.ErrBadFrame) {
			t.Errorf("%s: got %v, want ErrBadFrame", name, err)
		}
	}
}

// socketpair returns the two ends of a Unix socketpair, as the supervisor
// and a worker hold them.
func socketpair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "link")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return conns[0], conns[1]
}

// TestServe_BadVersion: a worker of another version is answered with
// the writer's version and refused, and nothing is written.
func TestServe_BadVersion(t *testing.T) {
	db := shardtest.Open(t, filepath.Join(t.TempDir(), "events.db"), shard.Options{})
	sup, wrk := socketpair(t)
	served := make(chan error, 1)
	go func() { served <- link.Serve(sup, db, link.Handlers{}) }()
	hello := append([]byte("gocolytics-link"), 99, 1)
	if _, err := wrk.Write(link.Frame{Type: link.FrameHello, Payload: hello}.Append(nil)); err != nil {
		t.Fatal(err)
	}
	f, _, err := link.ReadFrame(wrk, nil, link.MaxFrameBytes)
	if err != nil || f.Type != link.FrameWelcome || !bytes.Equal(f.Payload, []byte{link.Version}) {
		t.Fatalf("got %+v, %v; want a welcome with version %d", f, err, link.Version)
	}
	if err := <-served; !errors.Is(err, link.ErrBadVersion) {
		t.Errorf("Serve: got %v, want ErrBadVersion", err)
	}
	if _, _, err := link.ReadFrame(wrk, nil, link.MaxFrameBytes); err != io.EOF {
		t.Errorf("after the refusal: got %v, want the link closed", err)
	}
}

// TestServe_NotHello: a peer that does not start with a hello is
// refused.
func TestServe_NotHello(t *testing.T) {
	db := shardtest.Open(t, filepath.Join(t.TempDir(), "events.db"), shard.Options{})
	sup, wrk := socketpair(t)
	served := make(chan error, 1)
	go func() { served <- link.Serve(sup, db, link.Handlers{}) }()
	wrk.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	if err := <-served; err == nil || !strings.Contains(err.Error(), "hello") && !errors.Is(err, link.ErrBadFrame) {
		t.Errorf("got %v, want a refusal", err)
	}
}

// FuzzReadFrame: the frame reader and the decoders of what a frame carries
// never panic, and never accept a frame longer than its limit.
func FuzzReadFrame(f *testing.F) {
	f.Add(link.Frame{Type: link.FrameWrite, ID: 1, Payload: link.AppendEvents(nil, 3, []shard.Event{shardtest.Event(1)})}.Append(nil))
	f.Add(link.Frame{Type: link.FrameCall, ID: 2, Payload: []byte("x")}.Append(nil))
	f.Add([]byte{0, 0, 0, 9, 'W', 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		var buf []byte
		for {
			fr, b, err := link.ReadFrame(r, buf, 1<<16)
			buf = b
			if err != nil {
				return
			}
			if len(fr.Payload)+13 > 1<<16 {
				t.Fatalf("accepted a frame of %d bytes", len(fr.Payload)+13)
			}
			_, events, err := link.DecodeEvents(fr.Payload)
			if err == nil {
				again := link.AppendEvents(nil, 0, events)
				if _, back, err := link.DecodeEvents(again); err != nil || len(back) != len(events) {
					t.Fatalf("re-encoded events do not decode: %v", err)
				}
			}
		}
	})
}
