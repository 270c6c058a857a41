package link

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/gocolytics/gocolytics/shard"
)

// WriteTimeout is how long the writer's end of a link waits for a
// worker to take its replies before it gives the link up: a worker that
// stops reading must not hold anything of the writer's.
const WriteTimeout = 10 * time.Second

// Writer is what the link serves: the writer of the database
// (*shard.DB), or anything that commits events with the same meaning.
type Writer interface {
	// Write returns once events are committed, or with an error that
	// wraps one of shard's sentinels.
	Write(hint int, events []shard.Event) error
	// Health is nil when events can be committed now.
	Health() error
	// Stats are the writer's counters.
	Stats() shard.Stats
}

// Handlers are the parts of a link the writer does not own.
type Handlers struct {
	// Ready, when set, is called once the worker's hello has been answered.
	Ready func(worker int)
	// Call answers a FrameCall's payload; its result is the FrameReply's.
	// Nil answers every call with an empty payload.
	Call func(payload []byte) []byte
}

// Serve serves one worker process over conn (PROTOCOL.md): it answers
// the hello, commits the events of every FrameWrite through w.Write and
// replies with the outcome, and answers calls and status questions. It
// returns when the worker closes the link or breaks the protocol, once
// every write the worker sent has been committed or failed, so a write
// never outlives its link half-done: events of a dead worker are committed
// (or not) exactly as if it had lived, they are only never acknowledged.
// Serve closes conn.
func Serve(conn net.Conn, w Writer, h Handlers) error {
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 64<<10)
	f, buf, err := ReadFrame(r, nil, MaxFrameBytes)
	if err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	if f.Type != FrameHello {
		return fmt.Errorf("%w: first frame is %q, not a hello", ErrBadFrame, f.Type)
	}
	version, worker, err := decodeHello(f.Payload)
	if err != nil {
		return err
	}
	welcome := Frame{Type: FrameWelcome, Payload: []byte{Version}}.Append(nil)
	conn.SetWriteDeadline(time.Now().Add(WriteTimeout))
	if _, err := conn.Write(welcome); err != nil {
		return fmt.Errorf("write welcome: %w", err)
	}
	if version != Version {
		return fmt.Errorf("%w: worker %d speaks version %d, the writer %d", ErrBadVersion, worker, version, Version)
	}
	if h.Ready != nil {
		h.Ready(worker)
	}

	out := newSender(conn)
	var writes sync.WaitGroup
	defer func() {
		writes.Wait()
		out.close()
	}()
	for {
		f, buf, err = ReadFrame(r, buf, MaxFrameBytes)
		if err != nil {
			if isClosed(err) {
				return nil
			}
			return fmt.Errorf("worker %d: %w", worker, err)
		}
		switch f.Type {
		case FrameWrite:
			hint, events, err := DecodeEvents(f.Payload)
			if err != nil {
				return fmt.Errorf("worker %d: %w", worker, err)
			}
			writes.Add(1)
			go func(id uint64) {
				defer writes.Done()
				err := w.Write(hint, events)
				out.send(FrameResult, id, func(b []byte) []byte { return appendOutcome(b, err) })
			}(f.ID)
		case FrameCall:
			var reply []byte
			if h.Call != nil {
				reply = h.Call(f.Payload)
			}
			out.send(FrameReply, f.ID, func(b []byte) []byte { return append(b, reply...) })
		case FrameErase:
			// An erasure takes many chunks; the link goes on meanwhile.
			writes.Add(1)
			go func(id uint64, payload []byte) {
				defer writes.Done()
				reply := serveErase(w, payload)
				out.send(FrameErased, id, func(b []byte) []byte { return append(b, reply...) })
			}(f.ID, bytes.Clone(f.Payload))
		case FrameValueAsk:
			// Checked, then a non-blocking send to the writer's queue.
			reply := serveValueAsk(w, f.Payload)
			out.send(FrameValueAsked, f.ID, func(b []byte) []byte { return append(b, reply...) })
		case FrameStatus:
			health, st := w.Health(), w.Stats()
			out.send(FrameState, f.ID, func(b []byte) []byte { return appendState(b, health, st) })
		default:
			return fmt.Errorf("worker %d: %w: unknown type %q", worker, ErrBadFrame, f.Type)
		}
	}
}

// isClosed says whether a read error is the worker's end going away rather
// than a broken frame.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET)
}
