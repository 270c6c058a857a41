package ingest

import (
	"errors"
	"io"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// DefaultMaxInflightBytes is the default of MAX_INFLIGHT_BYTES: request
// bodies held in memory at once, raw and decompressed, over all requests.
const DefaultMaxInflightBytes = 64 << 20

// errOverBudget says a body would take the bytes in flight over the budget.
var errOverBudget = errors.New("request bodies in flight are over MAX_INFLIGHT_BYTES")

// maxBudgetWait is the longest a large body waits for its share of the
// budget before it is answered 503.
const maxBudgetWait = time.Second

// inflight is the budget of request-body bytes held in memory at once.
//
// A body is charged as its bytes arrive, never for the length a client
// announces: a client that announces 8 MiB and sends one byte holds a few
// KiB of it. Once a large body's first firstBodyBuf bytes are in (the
// client is really sending), it reserves at once all it may still need (its
// announced length and, for a body decoded as it came, the decoded events),
// waiting its turn, first come first served, up to maxBudgetWait. So a flood
// of large bodies is admitted a few whole bodies at a time, which finish,
// rather than sharing the budget out among partial bodies of which none
// can.
//
// The last eighth of the budget is kept for small bodies (announced at up
// to pooledBodyBuf, the common event or batch): a flood of large bodies
// fills at most seven eighths, so ordinary clients are still served.
type inflight struct {
	max  int64
	used atomic.Int64

	// waiting counts the queue, so that give looks at it only when needed.
	waiting atomic.Int32
	mu      sync.Mutex
	queue   []*budgetWaiter
}

// budgetWaiter is a large body waiting for n bytes; ready is closed, with
// b.mu held, once they are charged to it.
type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

// limit is the part of the budget a body may use.
func (b *inflight) limit(large bool) int64 {
	if large {
		return b.max - b.max/8
	}
	return b.max
}

// tryTake charges n bytes if the bytes in flight stay within limit.
func (b *inflight) tryTake(n, limit int64) bool {
	for {
		u := b.used.Load()
		if u+n > limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// take charges n bytes to a small body (large false) or a large one, at
// once; false if they are not there.
func (b *inflight) take(n int, large bool) bool {
	return b.tryTake(int64(n), b.limit(large))
}

// reserve charges n bytes to a large body, waiting behind the large bodies
// that asked before it, up to wait; false if they were not there in time.
func (b *inflight) reserve(n int64, wait time.Duration) bool {
	limit := b.limit(true)
	if n > limit {
		return false
	}
	b.mu.Lock()
	if len(b.queue) == 0 && b.tryTake(n, limit) {
		b.mu.Unlock()
		return true
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.queue = append(b.queue, w)
	b.waiting.Add(1)
	// A give between the tryTake above and the count of waiting may have
	// seen nobody waiting: look again, now that it would see this one.
	b.grantLocked()
	b.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.ready:
		return true
	case <-t.C:
	}
	b.mu.Lock()
	select {
	case <-w.ready: // granted between the timer and the lock
		b.mu.Unlock()
		return true
	default:
	}
	b.queue = slices.DeleteFunc(b.queue, func(q *budgetWaiter) bool { return q == w })
	b.waiting.Add(-1)
	b.mu.Unlock()
	// The one behind may fit where this one did not.
	b.grant()
	return false
}

// give returns n bytes to the budget and lets waiting bodies in.
func (b *inflight) give(n int) {
	b.used.Add(-int64(n))
	if b.waiting.Load() > 0 {
		b.grant()
	}
}

// grant charges waiting bodies, in order, as long as the first one fits.
func (b *inflight) grant() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.grantLocked()
}

// grantLocked is grant with b.mu held.
func (b *inflight) grantLocked() {
	limit := b.limit(true)
	for len(b.queue) > 0 {
		w := b.queue[0]
		if !b.tryTake(w.n, limit) {
			return
		}
		close(w.ready)
		b.queue[0] = nil
		b.queue = b.queue[1:]
		b.waiting.Add(-1)
	}
}

// Sizes of body buffers: the first read of a fresh buffer, and the largest
// buffer kept in the pool for the next request (also the size up to which a
// body is charged as it arrives, before it reserves the rest).
const (
	firstBodyBuf  = 4 << 10
	pooledBodyBuf = 32 << 10
)

// bodyBuf is a request body read under the budget; charged is what it holds
// of the budget: its capacity, plus what it reserved ahead.
type bodyBuf struct {
	b       []byte
	charged int
	budget  *inflight
	// expect is the size the body is expected to reach: its announced
	// length, or math.MaxInt when none was announced. decoded says its
	// decoded events will be charged too, so they are reserved with it.
	expect  int
	decoded bool
}

var bodyBufPool = sync.Pool{New: func() any { return new(bodyBuf) }}

// getBodyBuf returns an empty buffer for a body of expect bytes, or of up to
// the limit when expect is negative; decoded says the caller will charge
// the decoded events (takeDecoded).
func getBodyBuf(budget *inflight, expect int, decoded bool) *bodyBuf {
	bb := bodyBufPool.Get().(*bodyBuf)
	bb.budget, bb.expect, bb.decoded = budget, expect, decoded
	if expect < 0 {
		bb.expect = math.MaxInt
	}
	return bb
}

func (bb *bodyBuf) large() bool { return bb.expect > pooledBodyBuf }

// release gives the buffer's share of the budget back and pools it. The
// bytes must no longer be used.
func (bb *bodyBuf) release() {
	if bb == nil {
		return
	}
	bb.budget.give(bb.charged)
	bb.charged, bb.budget = 0, nil
	bb.dropLarge()
	bb.b = bb.b[:0]
	bodyBufPool.Put(bb)
}

// dropLarge lets go of a large buffer's bytes once they are decoded, but
// keeps its charge until release: the decoded events, copies, take about as
// much memory as the body did until they are committed.
func (bb *bodyBuf) dropLarge() {
	if cap(bb.b) > pooledBodyBuf {
		bb.b = nil
	}
}

// takeDecoded charges the decoded events of the body, as many bytes as the
// body: from what was reserved with it, or from the budget at once; false
// if they are not there.
func (bb *bodyBuf) takeDecoded() bool {
	need := cap(bb.b) + len(bb.b) - bb.charged
	if need <= 0 {
		return true
	}
	if !bb.budget.take(need, bb.large() || len(bb.b) > pooledBodyBuf) {
		return false
	}
	bb.charged += need
	return true
}

// readFrom appends r to the buffer until EOF. Before the buffer grows, the
// growth is taken from the budget (errOverBudget when it is not there); more
// than limit bytes is fasthttp.ErrBodyTooLarge.
func (bb *bodyBuf) readFrom(r io.Reader, limit int) error {
	for {
		c := cap(bb.b)
		if len(bb.b) == c {
			c = min(max(2*c, firstBodyBuf), limit+1)
			if (c > pooledBodyBuf || bb.large()) && c > firstBodyBuf && bb.charged < c {
				// A large body past its first buffer: reserve what it
				// will need, and make room for it at once. (Waiting
				// bodies hold only that first buffer: 600 waiting at
				// 32 KiB each held a third of the budget, and fewer
				// whole bodies fitted in the rest.)
				want := max(c, min(bb.expect, limit)+1)
				reserve := int64(want)
				if bb.decoded {
					reserve += int64(want - 1)
				}
				reserve = min(reserve, bb.budget.limit(true))
				if reserve > int64(bb.charged) {
					if !bb.budget.reserve(reserve-int64(bb.charged), maxBudgetWait) {
						return errOverBudget
					}
					bb.charged = int(reserve)
				}
				if bb.expect != math.MaxInt && want <= bb.charged {
					c = want
				}
			}
		}
		// Charge the buffer before a byte is read into it: a pooled one
		// comes uncharged, a grown one is charged before it is allocated.
		if c > bb.charged {
			if !bb.budget.take(c-bb.charged, bb.large() || c > pooledBodyBuf) {
				return errOverBudget
			}
			bb.charged = c
		}
		if c > cap(bb.b) {
			grown := make([]byte, len(bb.b), c)
			copy(grown, bb.b)
			bb.b = grown
		}
		n, err := r.Read(bb.b[len(bb.b):cap(bb.b)])
		bb.b = bb.b[:len(bb.b)+n]
		if len(bb.b) > limit {
			return fasthttp.ErrBodyTooLarge
		}
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return err
		}
	}
}

// readRequestBody reads the request's body (streamed, as fasthttp is told
// to) into a buffer charged to budget; decoded says the caller will charge
// its decoded events (takeDecoded). A Content-Length over limit is refused
// before a byte is read. A body refused (over the budget or the limit) is
// not read on: see refuseRest.
func readRequestBody(ctx *fasthttp.RequestCtx, limit int, budget *inflight, decoded bool) (*bodyBuf, error) {
	cl := ctx.Request.Header.ContentLength()
	if cl > limit {
		refuseRest(ctx, nil, cl, 0)
		return nil, fasthttp.ErrBodyTooLarge
	}
	bb := getBodyBuf(budget, cl, decoded)
	r := ctx.RequestBodyStream()
	if r == nil {
		r = bytesReader(ctx.Request.Body())
	}
	err := bb.readFrom(r, limit)
	if errors.Is(err, errOverBudget) || errors.Is(err, fasthttp.ErrBodyTooLarge) {
		refuseRest(ctx, r, cl, len(bb.b))
	}
	if err != nil {
		bb.release()
		return nil, err
	}
	return bb, nil
}

// maxDrain is the most of a refused body that is still read and dropped so
// that its connection stays open for the next request (fasthttp's own limit
// for a body a handler leaves unread).
const maxDrain = 256 << 10

// refuseRest deals with the unread rest of a body refused once read bytes of
// it were in (announced is its Content-Length, -1 if unknown; r its reader,
// nil if none was opened). A rest of up to maxDrain
// is read from r (when given) and dropped, and the connection stays open.
// A longer one is not read: reading it costs as much CPU and bandwidth as
// accepting it, and under a flood of large bodies that starved the bodies
// let in and the small requests. The answer goes out with Connection:
// close, and the connection is closed gently (lingerClose): the client sees
// the answer, then the end of the stream, and what it is still sending
// is dropped by the kernel.
func refuseRest(ctx *fasthttp.RequestCtx, r io.Reader, announced, read int) {
	if r != nil && announced >= 0 && announced-read <= maxDrain {
		io.Copy(io.Discard, io.LimitReader(r, int64(announced-read)))
		return
	}
	ctx.SetConnectionClose()
	lingerOnClose(ctx.Conn())
}

// bytesReader is a reader of b that needs no allocation for an empty body.
func bytesReader(b []byte) io.Reader {
	if len(b) == 0 {
		return eofReader{}
	}
	return &sliceReader{b: b}
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// bodyProblem words a failure to read a body for the client.
func bodyProblem(ctx *fasthttp.RequestCtx, err error) *Problem {
	switch {
	case errors.Is(err, errOverBudget):
		ctx.Response.Header.Set("Retry-After", "1")
		setReason(ctx, "inflight_budget")
		return &Problem{Status: fasthttp.StatusServiceUnavailable,
			Detail: "Server busy: too many request bodies in flight; retry in a second"}
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		setReason(ctx, "body_too_large")
		return &Problem{Status: fasthttp.StatusRequestEntityTooLarge, Detail: "Request body too large"}
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return &Problem{Status: fasthttp.StatusRequestTimeout, Detail: "Request Timeout"}
	}
	return &Problem{Status: fasthttp.StatusBadRequest, Detail: "Request body could not be read"}
}
