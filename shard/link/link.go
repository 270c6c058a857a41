package link

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/gocolytics/gocolytics/shard"
)

// Client is a worker process's end of the link to the writer (PROTOCOL.md).
// Its Write has the meaning of shard.DB.Write: it returns once the writer
// has committed the events, or with the writer's error, which wraps the
// same sentinel (shard.ErrDiskFull, ErrBusy, ErrClosed, ErrCommit). When
// the link is down every call fails with an error wrapping
// shard.ErrClosed; a call that was under way when it went down wraps
// shard.ErrInDoubt too, since its frame may have reached the writer (a
// write may have been committed, its result lost). It is safe for
// concurrent use.
type Client struct {
	conn net.Conn
	out  *sender
	done chan struct{}

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]*call
	err     error

	// asks is the queue of value asks sendAsks sends (valueask.go);
	// asked, under askMu, when each triple was last queued.
	asks  chan valueAsk
	askMu sync.Mutex
	asked map[valueAsk]time.Time
}

// call is one request waiting for its reply.
type call struct {
	ch      chan struct{}
	want    byte
	scratch []byte
	// Set by the reader before it signals ch.
	err     error
	payload []byte
	state   linkState
	erased  int64
}

var callPool = sync.Pool{New: func() any { return &call{ch: make(chan struct{}, 1)} }}

// Dial says hello to the writer over conn as worker number worker and
// waits for its welcome. The Client owns conn from then on.
func Dial(conn net.Conn, worker int) (*Client, error) {
	conn.SetDeadline(time.Now().Add(WriteTimeout))
	if _, err := conn.Write(appendHello(nil, Version, worker)); err != nil {
		return nil, fmt.Errorf("write hello: %w", err)
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	f, buf, err := ReadFrame(r, nil, MaxFrameBytes)
	if err != nil {
		return nil, fmt.Errorf("read welcome: %w", err)
	}
	if f.Type != FrameWelcome || len(f.Payload) != 1 {
		return nil, fmt.Errorf("%w: expected a welcome, got %q", ErrBadFrame, f.Type)
	}
	if f.Payload[0] != Version {
		return nil, fmt.Errorf("%w: the writer speaks version %d, this worker %d", ErrBadVersion, f.Payload[0], Version)
	}
	conn.SetDeadline(time.Time{})
	l := &Client{conn: conn, out: newSender(conn), done: make(chan struct{}), pending: make(map[uint64]*call),
		asks: make(chan valueAsk, valueAskQueue), asked: make(map[valueAsk]time.Time)}
	go l.read(r, buf)
	go l.sendAsks()
	return l, nil
}

// Write sends events to the writer and waits for the outcome of their
// commit.
func (l *Client) Write(hint int, events []shard.Event) error {
	if len(events) == 0 {
		return nil
	}
	c := callPool.Get().(*call)
	c.scratch = AppendEvents(c.scratch[:0], hint, events)
	if len(c.scratch)+frameHeader > MaxFrameBytes {
		callPool.Put(c)
		return fmt.Errorf("%w: %d events make a frame larger than %d bytes", shard.ErrCommit, len(events), MaxFrameBytes)
	}
	l.roundTrip(c, FrameWrite, FrameResult)
	err := c.err
	l.release(c)
	return err
}

// Call sends payload to the writer's call handler and returns its answer.
func (l *Client) Call(payload []byte) ([]byte, error) {
	c := callPool.Get().(*call)
	c.scratch = append(c.scratch[:0], payload...)
	l.roundTrip(c, FrameCall, FrameReply)
	p, err := c.payload, c.err
	l.release(c)
	return p, err
}

// Health is the writer's shard.DB.Health, or why the link is down.
func (l *Client) Health() error {
	s, err := l.status()
	if err != nil {
		return err
	}
	return s.health
}

// Stats are the writer's shard.DB.Stats; zero when the link is down.
func (l *Client) Stats() shard.Stats {
	s, _ := l.status()
	return s.stats
}

func (l *Client) status() (linkState, error) {
	c := callPool.Get().(*call)
	c.scratch = c.scratch[:0]
	l.roundTrip(c, FrameStatus, FrameState)
	s, err := c.state, c.err
	l.release(c)
	return s, err
}

// Done is closed when the link is down: the writer went away, broke the
// protocol, or Close was called.
func (l *Client) Done() <-chan struct{} { return l.done }

// Err says why the link is down; nil while it is up.
func (l *Client) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Close takes the link down. Calls waiting for a reply fail.
func (l *Client) Close() error {
	l.fail(net.ErrClosed)
	return nil
}

// roundTrip sends c's scratch as a frame of type typ and waits for the
// reply, or for the link to go down.
func (l *Client) roundTrip(c *call, typ, want byte) {
	c.want = want
	l.mu.Lock()
	if l.err != nil {
		c.err = l.err
		l.mu.Unlock()
		return
	}
	l.nextID++
	id := l.nextID
	l.pending[id] = c
	l.mu.Unlock()
	// A failed send closes conn, so the reader fails and signals c.
	l.out.send(typ, id, func(b []byte) []byte { return append(b, c.scratch...) })
	<-c.ch
}

func (l *Client) release(c *call) {
	c.err, c.payload, c.state, c.erased = nil, nil, linkState{}, 0
	if cap(c.scratch) > 1<<20 {
		c.scratch = nil
	}
	callPool.Put(c)
}

// read delivers the writer's replies until the link goes down.
func (l *Client) read(r *bufio.Reader, buf []byte) {
	for {
		f, b, err := ReadFrame(r, buf, MaxFrameBytes)
		buf = b
		if err != nil {
			l.fail(err)
			return
		}
		l.mu.Lock()
		c := l.pending[f.ID]
		delete(l.pending, f.ID)
		l.mu.Unlock()
		if c == nil || c.want != f.Type {
			l.fail(fmt.Errorf("%w: unexpected reply %q to request %d", ErrBadFrame, f.Type, f.ID))
			if c != nil {
				c.err = inDoubt(l.Err())
				c.ch <- struct{}{}
			}
			return
		}
		switch f.Type {
		case FrameResult:
			_, c.err = decodeOutcome(f.Payload)
		case FrameReply:
			c.payload = bytes.Clone(f.Payload)
		case FrameState:
			c.state, c.err = decodeState(f.Payload)
		case FrameErased:
			c.erased, c.err = decodeErased(f.Payload)
		case FrameValueAsked:
			// Nothing to do: the ask was passed on or refused.
		}
		c.ch <- struct{}{}
	}
}

// fail takes the link down once, failing every call under way in doubt.
// Later calls fail with ErrClosed alone: they were never sent.
func (l *Client) fail(cause error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	l.err = fmt.Errorf("%w: link to the writer: %v", shard.ErrClosed, cause)
	doubt := inDoubt(l.err)
	for id, c := range l.pending {
		c.err = doubt
		c.ch <- struct{}{}
		delete(l.pending, id)
	}
	l.conn.Close()
	close(l.done)
}

// inDoubt is the error of a call under way when the link went down (err):
// the writer may have acted on it. It wraps shard.ErrInDoubt and err.
func inDoubt(err error) error { return fmt.Errorf("%w: %w", shard.ErrInDoubt, err) }

// sender gathers the frames going one way over a link, so that frames
// queued together leave in one write: whoever queues onto an idle buffer
// writes it, and whatever is queued meanwhile, until it is empty. After a
// failed write (or WriteTimeout without progress) the connection is
// closed and every later frame dropped.
type sender struct {
	conn net.Conn

	mu       sync.Mutex
	buf      []byte
	spare    []byte
	flushing bool
	failed   bool
}

func newSender(conn net.Conn) *sender { return &sender{conn: conn} }

// send queues one frame whose payload the function appends.
func (o *sender) send(typ byte, id uint64, payload func([]byte) []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.failed {
		return
	}
	var start int
	o.buf, start = beginFrame(o.buf, typ, id)
	o.buf = endFrame(payload(o.buf), start)
	if o.flushing {
		return
	}
	o.flushing = true
	for len(o.buf) > 0 && !o.failed {
		b := o.buf
		o.buf = o.spare[:0]
		o.mu.Unlock()
		o.conn.SetWriteDeadline(time.Now().Add(WriteTimeout))
		_, err := o.conn.Write(b)
		o.mu.Lock()
		o.spare = b[:0]
		if err != nil {
			o.failed, o.buf = true, nil
			o.conn.Close()
		}
	}
	o.flushing = false
}

// close drops every later frame and closes the connection.
func (o *sender) close() {
	o.mu.Lock()
	o.failed = true
	o.mu.Unlock()
	o.conn.Close()
}
