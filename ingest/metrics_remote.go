package ingest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// With worker processes the server has one Metrics, the supervisor's: its
// writer feeds the commit metrics, and every worker sends what it observes
// of its requests there (request counts by path and status, rejections by
// reason, events per stored request, clients answered 429). A worker's
// /metrics answers with the supervisor's text. So every worker shows the
// same process-wide counters, and a counter never goes down between two
// scrapes, whichever worker answers them.
//
// Both travel as calls on the link (shard/link's FrameCall, PROTOCOL.md),
// told apart by their first byte.
const (
	// MetricsRecords opens a call that carries a batch of a worker's
	// records; the answer is empty.
	MetricsRecords byte = 'R'
	// MetricsText is the call that asks for the supervisor's /metrics
	// text; the answer is the text.
	MetricsText byte = 'M'
)

// The records of a MetricsRecords batch: a kind byte, then its values as
// uvarints, strings length-prefixed.
const (
	recordRequest byte = 'q' // path (index of metricPaths), status, reason
	recordEvents  byte = 'e' // events of one stored request
	recordLimited byte = 'l' // client key, wait in milliseconds
)

// RemoteFlushEvery is how often a worker sends the records it has
// gathered; a batch that grows past maxRecordBytes goes at once, and a
// scrape of the worker's /metrics sends its own first.
const RemoteFlushEvery = 500 * time.Millisecond

const maxRecordBytes = 64 << 10

// remote gathers a worker's records and sends them to the supervisor.
type remote struct {
	call func(question []byte) ([]byte, error)

	mu  sync.Mutex
	buf []byte // MetricsRecords, then records

	sending sync.Mutex // batches leave one at a time, in order
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// NewRemoteMetrics returns the Metrics of a worker process: what it
// observes goes to the supervisor's Metrics through call (link.Client's
// Call), and its /metrics shows the supervisor's. Close sends what is left.
func NewRemoteMetrics(call func(question []byte) ([]byte, error)) *Metrics {
	m := NewMetrics()
	m.remote = &remote{
		call: call,
		buf:  []byte{MetricsRecords},
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go m.remote.loop()
	return m
}

// Close sends the records not yet sent and stops a remote Metrics; it does
// nothing to others.
func (m *Metrics) Close() {
	if r := m.remote; r != nil {
		r.once.Do(func() { close(r.stop) })
		<-r.done
	}
}

func (r *remote) loop() {
	defer close(r.done)
	t := time.NewTicker(RemoteFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-r.kick:
		case <-r.stop:
			r.flush()
			return
		}
		r.flush()
	}
}

// add appends one record under the lock.
func (r *remote) add(f func(b []byte) []byte) {
	r.mu.Lock()
	r.buf = f(r.buf)
	full := len(r.buf) > maxRecordBytes
	r.mu.Unlock()
	if full {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
}

func (r *remote) request(path, status int, reason string) {
	r.add(func(b []byte) []byte {
		b = append(b, recordRequest, byte(path))
		b = binary.AppendUvarint(b, uint64(status))
		return appendString(b, reason)
	})
}

func (r *remote) events(n int) {
	r.add(func(b []byte) []byte {
		return binary.AppendUvarint(append(b, recordEvents), uint64(n))
	})
}

func (r *remote) limited(client string, wait time.Duration) {
	r.add(func(b []byte) []byte {
		b = appendString(append(b, recordLimited), client)
		return binary.AppendUvarint(b, uint64(wait.Milliseconds()))
	})
}

// flush sends the records gathered so far. Records that cannot be sent
// (the link is down: the worker is ending) are dropped.
func (r *remote) flush() {
	r.sending.Lock()
	defer r.sending.Unlock()
	r.mu.Lock()
	if len(r.buf) == 1 {
		r.mu.Unlock()
		return
	}
	b := r.buf
	r.buf = append(make([]byte, 0, cap(b)), MetricsRecords)
	r.mu.Unlock()
	r.call(b)
}

// serve answers /metrics with the supervisor's text, after sending this
// worker's records.
func (r *remote) serve(ctx *fasthttp.RequestCtx) {
	r.flush()
	text, err := r.call([]byte{MetricsText})
	if err != nil {
		writeDetail(ctx, fasthttp.StatusServiceUnavailable, "metrics unavailable: "+err.Error())
		return
	}
	ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	ctx.SetBody(text)
}

// Answer answers a worker's MetricsRecords or MetricsText call, for the
// supervisor's Metrics. A malformed batch is dropped from the first bad
// record on.
func (m *Metrics) Answer(q []byte) []byte {
	if len(q) == 0 {
		return nil
	}
	switch q[0] {
	case MetricsText:
		var b bytes.Buffer
		m.WriteText(&b)
		return b.Bytes()
	case MetricsRecords:
		m.apply(q[1:])
	}
	return nil
}

// apply replays a batch of records.
func (m *Metrics) apply(p []byte) error {
	for len(p) > 0 {
		kind := p[0]
		p = p[1:]
		var err error
		switch kind {
		case recordRequest:
			if len(p) == 0 || int(p[0]) >= len(metricPaths) {
				return fmt.Errorf("metrics record: bad path")
			}
			path := int(p[0])
			var status uint64
			var reason string
			if status, p, err = readUvarint(p[1:]); err != nil {
				return err
			}
			if reason, p, err = readString(p); err != nil {
				return err
			}
			if !isLabel(reason) {
				return fmt.Errorf("metrics record: bad reason")
			}
			m.observeRequest(path, int(status), reason)
		case recordEvents:
			var n uint64
			if n, p, err = readUvarint(p); err != nil {
				return err
			}
			m.requestEvents.Update(float64(n))
		case recordLimited:
			var client string
			var ms uint64
			if client, p, err = readString(p); err != nil {
				return err
			}
			if ms, p, err = readUvarint(p); err != nil {
				return err
			}
			m.limited.note(client, time.Now().Add(time.Duration(ms)*time.Millisecond))
		default:
			return fmt.Errorf("metrics record: unknown kind %q", kind)
		}
	}
	return nil
}

// isLabel says whether s may stand inside a label value as it is: the
// reasons are lower-case words joined by underscores.
func isLabel(s string) bool {
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func readUvarint(p []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(p)
	if n <= 0 {
		return 0, nil, fmt.Errorf("metrics record: bad number")
	}
	return v, p[n:], nil
}

func readString(p []byte) (string, []byte, error) {
	l, p, err := readUvarint(p)
	if err != nil || l > uint64(len(p)) {
		return "", nil, fmt.Errorf("metrics record: bad string")
	}
	return string(p[:l]), p[l:], nil
}
