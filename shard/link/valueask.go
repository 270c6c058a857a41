package link

import (
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"
)

// ValueAsker is the part of a Writer that keeps the value field registry
// (*shard.DB.AskValueField). Serve passes a FrameValueAsk on to it when
// the Writer has it.
type ValueAsker interface {
	// AskValueField must not block: Serve calls it on the link's reading
	// goroutine.
	AskValueField(application, eventType, field, path string)
}

// MaxValueAskBytes bounds each string of a FrameValueAsk: the stats API
// takes parameters of 1,024 characters (of up to 4 bytes), and fields far
// shorter. An ask with a longer string is refused.
const MaxValueAskBytes = 4 << 10

// AskValueEvery is how long a worker waits before it sends the same
// (application, event type, field) again: the writer writes a field's
// asked_at at most once a minute anyway.
const AskValueEvery = time.Minute

// valueAskQueue is how many asks a worker holds for sending; more are
// dropped (the next request asks again).
const valueAskQueue = 16

// maxAskedKeys bounds the worker's memory of what it sent: when full, it
// is forgotten at once.
const maxAskedKeys = 1024

// Outcomes of a FrameValueAsk, the one byte of its FrameValueAsked.
const (
	askRefused byte = 0 // malformed, out of bounds, or the writer keeps no registry
	askPassed  byte = 1 // handed to the writer (which may still drop it)
)

// valueAsk is the payload of a FrameValueAsk.
type valueAsk struct {
	application, eventType, field, path string
}

// appendValueAsk appends the payload of a FrameValueAsk: application,
// event type, field and path, each a uvarint length and its bytes.
func appendValueAsk(b []byte, a valueAsk) []byte {
	for _, s := range [...]string{a.application, a.eventType, a.field, a.path} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// decodeValueAsk reads the payload of a FrameValueAsk and checks it as the
// writer must: four non-empty UTF-8 strings of at most MaxValueAskBytes,
// nothing after them. The path's syntax is the writer's to check
// (shard.DB's registry tries it on SQLite's JSON functions).
func decodeValueAsk(p []byte) (valueAsk, error) {
	var s [4]string
	for i := range s {
		l, n := binary.Uvarint(p)
		if n <= 0 || l > uint64(len(p)-n) {
			return valueAsk{}, fmt.Errorf("%w: bad value ask", ErrBadFrame)
		}
		if l == 0 || l > MaxValueAskBytes || !utf8.Valid(p[n:n+int(l)]) {
			return valueAsk{}, fmt.Errorf("%w: value ask string %d: empty, longer than %d bytes or not UTF-8", ErrBadFrame, i+1, MaxValueAskBytes)
		}
		s[i], p = string(p[n:n+int(l)]), p[n+int(l):]
	}
	if len(p) > 0 {
		return valueAsk{}, fmt.Errorf("%w: value ask: trailing bytes", ErrBadFrame)
	}
	return valueAsk{s[0], s[1], s[2], s[3]}, nil
}

// serveValueAsk runs one FrameValueAsk through w and returns the reply's
// payload. A malformed ask is refused, not a protocol error: the link and
// the worker's ingest go on.
func serveValueAsk(w Writer, payload []byte) []byte {
	a, err := decodeValueAsk(payload)
	va, ok := w.(ValueAsker)
	if err != nil || !ok {
		return []byte{askRefused}
	}
	va.AskValueField(a.application, a.eventType, a.field, a.path)
	return []byte{askPassed}
}

// AskValueField tells the writer that the value statistics of field (at
// the JSON path path) of application's events of eventType were asked
// for, as shard.DB.AskValueField does in one process. It never blocks: the
// ask waits in a queue of the Client's, which one goroutine sends, one ask
// at a time; when the queue is full or the link is down the ask is
// dropped (the next request asks again), and the same triple is sent at
// most once every AskValueEvery. The writer checks what it gets.
func (l *Client) AskValueField(application, eventType, field, path string) {
	a := valueAsk{application, eventType, field, path}
	key := valueAsk{application, eventType, field, ""}
	now := time.Now()
	l.askMu.Lock()
	defer l.askMu.Unlock()
	if t, ok := l.asked[key]; ok && now.Sub(t) < AskValueEvery {
		return
	}
	select {
	case l.asks <- a:
		if len(l.asked) >= maxAskedKeys {
			clear(l.asked)
		}
		l.asked[key] = now
	default:
	}
}

// sendAsks sends the queued asks until the link goes down. Each waits for
// its reply, so a slow writer fills the queue rather than the link.
func (l *Client) sendAsks() {
	for {
		select {
		case <-l.done:
			return
		case a := <-l.asks:
			c := callPool.Get().(*call)
			c.scratch = appendValueAsk(c.scratch[:0], a)
			l.roundTrip(c, FrameValueAsk, FrameValueAsked)
			l.release(c)
		}
	}
}
