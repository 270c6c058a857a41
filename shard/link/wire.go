package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gocolytics/gocolytics/shard"
)

// Version is the version of the link protocol between worker processes
// and the writer (PROTOCOL.md). Both ends send it first; a mismatch ends
// the link before any event crosses it.
const Version = 3

// MaxFrameBytes caps one frame of the link, header included. A frame
// carries at most one request body's events, which MAX_BODY_BYTES keeps far
// below this.
const MaxFrameBytes = 256 << 20

// Frame types of the link. Upper case goes from the worker to the writer,
// lower case back.
const (
	FrameHello   byte = 'H' // worker: magic, version, worker number
	FrameWelcome byte = 'h' // writer: its version
	FrameWrite   byte = 'W' // worker: events to commit
	FrameResult  byte = 'w' // writer: the outcome of a FrameWrite
	FrameCall    byte = 'C' // worker: a question for the writer's call handler
	FrameReply   byte = 'c' // writer: the handler's answer
	FrameStatus  byte = 'S' // worker: a question about the writer's health
	FrameState   byte = 's' // writer: health and counters
	FrameErase   byte = 'E' // worker: erase a user's rows
	FrameErased  byte = 'e' // writer: the outcome of a FrameErase and the rows deleted
	// FrameValueAsk says a value statistics field was asked for (the
	// writer's field registry); FrameValueAsked is its one-byte outcome.
	FrameValueAsk   byte = 'V'
	FrameValueAsked byte = 'v'
)

// linkMagic opens every hello, so that a stray peer is told apart from a
// worker of another version.
const linkMagic = "gocolytics-link"

// frameHeader is the size of a frame's length, type and id.
const frameHeader = 4 + 1 + 8

// Errors of the link codec.
var (
	ErrBadFrame   = errors.New("malformed link frame")
	ErrBadVersion = errors.New("link protocol version mismatch")
)

// Frame is one message of the link: a type, the id of the request it is or
// answers, and a payload whose layout the type defines.
type Frame struct {
	Type    byte
	ID      uint64
	Payload []byte
}

// Append appends the frame's encoding to b.
func (f Frame) Append(b []byte) []byte {
	b, start := beginFrame(b, f.Type, f.ID)
	return endFrame(append(b, f.Payload...), start)
}

// beginFrame appends a frame header whose length endFrame fills in.
func beginFrame(b []byte, typ byte, id uint64) ([]byte, int) {
	start := len(b)
	b = append(b, 0, 0, 0, 0, typ)
	return binary.BigEndian.AppendUint64(b, id), start
}

func endFrame(b []byte, start int) []byte {
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b
}

// ReadFrame reads one frame from r. Its payload is read into buf, grown as
// needed, and aliases it: it is valid until buf is reused. Frames longer
// than max bytes are refused without being read.
func ReadFrame(r io.Reader, buf []byte, max int) (Frame, []byte, error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(r, h[:4]); err != nil {
		if err == io.EOF {
			return Frame{}, buf, err // between frames: the peer closed
		}
		return Frame{}, buf, truncated(err)
	}
	n := int(binary.BigEndian.Uint32(h[:4]))
	if n < frameHeader-4 || n+4 > max {
		return Frame{}, buf, fmt.Errorf("%w: length %d", ErrBadFrame, n)
	}
	if _, err := io.ReadFull(r, h[4:]); err != nil {
		return Frame{}, buf, truncated(err)
	}
	n -= frameHeader - 4
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return Frame{}, buf, truncated(err)
	}
	return Frame{Type: h[4], ID: binary.BigEndian.Uint64(h[5:]), Payload: buf}, buf, nil
}

// truncated turns the end of the stream inside a frame into an error that
// says so.
func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated: %w", ErrBadFrame, io.ErrUnexpectedEOF)
	}
	return err
}

// appendHello is a worker's first frame.
func appendHello(b []byte, version byte, worker int) []byte {
	b, start := beginFrame(b, FrameHello, 0)
	b = append(b, linkMagic...)
	b = append(b, version)
	b = binary.AppendUvarint(b, uint64(worker))
	return endFrame(b, start)
}

// decodeHello reads the payload of a FrameHello.
func decodeHello(p []byte) (version byte, worker int, err error) {
	if len(p) < len(linkMagic)+1 || string(p[:len(linkMagic)]) != linkMagic {
		return 0, 0, fmt.Errorf("%w: not a hello", ErrBadFrame)
	}
	version = p[len(linkMagic)]
	w, n := binary.Uvarint(p[len(linkMagic)+1:])
	if n <= 0 || w > 1<<16 {
		return version, 0, fmt.Errorf("%w: bad worker number", ErrBadFrame)
	}
	return version, int(w), nil
}

// AppendEvents appends the payload of a FrameWrite: the shard hint, the
// number of events, then each event's seven strings (length-prefixed) and
// its time in Unix nanoseconds.
func AppendEvents(b []byte, hint int, events []shard.Event) []byte {
	b = binary.AppendUvarint(b, uint64(uint32(hint)))
	b = binary.AppendUvarint(b, uint64(len(events)))
	for i := range events {
		e := &events[i]
		for _, s := range [...]string{e.EventType, e.Application, e.Version, e.Platform, e.UserID, e.SessionID, e.Value} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		b = binary.AppendVarint(b, e.Time.UnixNano())
	}
	return b
}

// minEventBytes is the smallest encoded event: seven empty strings and a
// one-byte time.
const minEventBytes = 8

// DecodeEvents reads the payload of a FrameWrite. The strings of all events
// share one copy of p, so that p may be reused afterwards.
func DecodeEvents(p []byte) (hint int, events []shard.Event, err error) {
	bad := func(what string) (int, []shard.Event, error) {
		return 0, nil, fmt.Errorf("%w: %s", ErrBadFrame, what)
	}
	h, n := binary.Uvarint(p)
	if n <= 0 || h > 1<<32-1 {
		return bad("bad shard hint")
	}
	p = p[n:]
	count, n := binary.Uvarint(p)
	if n <= 0 || count > uint64(len(p)-n)/minEventBytes {
		return bad("bad event count")
	}
	p = p[n:]
	all := string(p)
	off := 0
	events = make([]shard.Event, count)
	for i := range events {
		var f [7]string
		for j := range f {
			l, n := binary.Uvarint(p[off:])
			if n <= 0 || l > uint64(len(p)-off-n) {
				return bad("bad string length")
			}
			off += n
			f[j] = all[off : off+int(l)]
			off += int(l)
		}
		t, n := binary.Varint(p[off:])
		if n <= 0 {
			return bad("bad time")
		}
		off += n
		events[i] = shard.Event{EventType: f[0], Application: f[1], Version: f[2], Platform: f[3],
			UserID: f[4], SessionID: f[5], Value: f[6], Time: time.Unix(0, t)}
	}
	if off != len(p) {
		return bad("trailing bytes")
	}
	return int(h), events, nil
}

// Outcome codes of a FrameResult, one per sentinel error of Write.
const (
	outcomeOK byte = iota
	outcomeDiskFull
	outcomeBusy
	outcomeClosed
	outcomeCommit
)

// appendOutcome appends the payload of a FrameResult: the outcome code and
// the error's text (empty for success).
func appendOutcome(b []byte, err error) []byte {
	code := outcomeOK
	switch {
	case err == nil:
		return append(b, outcomeOK, 0)
	case errors.Is(err, shard.ErrDiskFull):
		code = outcomeDiskFull
	case errors.Is(err, shard.ErrBusy):
		code = outcomeBusy
	case errors.Is(err, shard.ErrClosed):
		code = outcomeClosed
	default:
		code = outcomeCommit
	}
	msg := err.Error()
	b = append(b, code)
	b = binary.AppendUvarint(b, uint64(len(msg)))
	return append(b, msg...)
}

// decodeOutcome reads an outcome written by appendOutcome and returns the
// error it stands for, which wraps the same sentinel as the writer's did.
// It returns the rest of p first.
func decodeOutcome(p []byte) (rest []byte, outcome error) {
	if len(p) < 2 {
		return nil, fmt.Errorf("%w: %w: no outcome", shard.ErrCommit, ErrBadFrame)
	}
	code := p[0]
	l, n := binary.Uvarint(p[1:])
	if n <= 0 || l > uint64(len(p)-1-n) {
		return nil, fmt.Errorf("%w: %w: bad outcome", shard.ErrCommit, ErrBadFrame)
	}
	msg, rest := string(p[1+n:1+n+int(l)]), p[1+n+int(l):]
	var sentinel error
	switch code {
	case outcomeOK:
		return rest, nil
	case outcomeDiskFull:
		sentinel = shard.ErrDiskFull
	case outcomeBusy:
		sentinel = shard.ErrBusy
	case outcomeClosed:
		sentinel = shard.ErrClosed
	default:
		sentinel = shard.ErrCommit
	}
	return rest, &remoteError{sentinel, msg}
}

// remoteError is an error of the writer, seen from a worker: its text is
// the writer's, and errors.Is finds the same sentinel.
type remoteError struct {
	sentinel error
	msg      string
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// appendState appends the payload of a FrameState: the writer's health as
// an outcome, then its counters.
func appendState(b []byte, health error, st shard.Stats) []byte {
	b = appendOutcome(b, health)
	b = binary.AppendUvarint(b, st.EventsStored)
	b = binary.AppendUvarint(b, st.Commits)
	b = binary.AppendUvarint(b, st.FailedCommits)
	b = binary.AppendVarint(b, st.QueuedEvents)
	b = binary.AppendVarint(b, int64(st.Stuck))
	b = appendOutcome(b, st.LastError)
	b = binary.AppendUvarint(b, st.RowsErased)
	return binary.AppendUvarint(b, st.RowsPruned)
}

// linkState is a decoded FrameState.
type linkState struct {
	health error
	stats  shard.Stats
}

// decodeState reads a FrameState payload.
func decodeState(p []byte) (linkState, error) {
	p, health := decodeOutcome(p)
	var v [5]uint64
	for i := range v {
		var n int
		if i < 3 {
			v[i], n = binary.Uvarint(p)
		} else {
			var s int64
			s, n = binary.Varint(p)
			v[i] = uint64(s)
		}
		if n <= 0 {
			return linkState{}, fmt.Errorf("%w: bad state", ErrBadFrame)
		}
		p = p[n:]
	}
	st := shard.Stats{EventsStored: v[0], Commits: v[1], FailedCommits: v[2], QueuedEvents: int64(v[3]), Stuck: time.Duration(int64(v[4]))}
	p, st.LastError = decodeOutcome(p)
	var n int
	if st.RowsErased, n = binary.Uvarint(p); n > 0 {
		st.RowsPruned, _ = binary.Uvarint(p[n:])
	}
	return linkState{health, st}, nil
}
