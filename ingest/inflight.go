package ingest

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

// DefaultMaxInflightBytes is the default of MAX_INFLIGHT_BYTES: request
// bodies held in memory at once, raw and decompressed, over all requests.
const DefaultMaxInflightBytes = 64 << 20

// errOverBudget says a body would take the bytes in flight over the budget.
var errOverBudget = errors.New("request bodies in flight are over MAX_INFLIGHT_BYTES")

// inflight is the budget of request-body bytes held in memory at once. A
// body is charged for the buffer it occupies as it grows, that is as its
// bytes arrive (or come out of the decompressor), never for the length a
// client announces: a client that announces 8 MiB and sends one byte holds
// a few KiB of it.
//
// The last eighth of the budget is kept for small bodies (buffers of up to
// pooledBodyBuf, the common event or batch): a flood of large bodies fills
// at most seven eighths, so ordinary clients are still served.
type inflight struct {
	max  int64
	used atomic.Int64
}

// take charges n bytes for a buffer growing to size; false if they are
// not there.
func (b *inflight) take(n, size int) bool {
	limit := b.max
	if size > pooledBodyBuf {
		limit -= b.max / 8
	}
	if b.used.Add(int64(n)) > limit {
		b.used.Add(-int64(n))
		return false
	}
	return true
}

func (b *inflight) give(n int) { b.used.Add(-int64(n)) }

// Sizes of body buffers: the first read of a fresh buffer, and the largest
// buffer kept in the pool for the next request.
const (
	firstBodyBuf  = 4 << 10
	pooledBodyBuf = 32 << 10
)

// bodyBuf is a request body read under the budget; charged is what it holds
// of the budget (its capacity).
type bodyBuf struct {
	b       []byte
	charged int
	budget  *inflight
}

var bodyBufPool = sync.Pool{New: func() any { return new(bodyBuf) }}

func getBodyBuf(budget *inflight) *bodyBuf {
	bb := bodyBufPool.Get().(*bodyBuf)
	bb.budget = budget
	return bb
}

// release gives the buffer's share of the budget back and pools it. The
// bytes must no longer be used.
func (bb *bodyBuf) release() {
	if bb == nil {
		return
	}
	bb.budget.give(bb.charged)
	bb.charged, bb.budget = 0, nil
	if cap(bb.b) > pooledBodyBuf {
		bb.b = nil
	}
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

// readFrom appends r to the buffer until EOF. Before the buffer grows, the
// growth is taken from the budget (errOverBudget when it is not there); more
// than limit bytes is fasthttp.ErrBodyTooLarge.
func (bb *bodyBuf) readFrom(r io.Reader, limit int) error {
	for {
		// Charge the buffer before a byte is read into it: a pooled one
		// comes uncharged, a grown one is charged before it is allocated.
		c := cap(bb.b)
		if len(bb.b) == c {
			c = min(max(2*c, firstBodyBuf), limit+1)
		}
		if c > bb.charged {
			if !bb.budget.take(c-bb.charged, c) {
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
// to) into a buffer charged to budget. A Content-Length over limit is
// refused before a byte is read. A body over the budget is read to its end
// and dropped, a few KiB at a time.
func readRequestBody(ctx *fasthttp.RequestCtx, limit int, budget *inflight) (*bodyBuf, error) {
	if ctx.Request.Header.ContentLength() > limit {
		return nil, fasthttp.ErrBodyTooLarge
	}
	bb := getBodyBuf(budget)
	r := ctx.RequestBodyStream()
	if r == nil {
		r = bytesReader(ctx.Request.Body())
	}
	err := bb.readFrom(r, limit)
	if errors.Is(err, errOverBudget) {
		// Read the rest and throw it away (through io.Discard's small
		// pooled buffers, up to the body limit), so that the client, busy
		// sending, gets to read the 503 on a connection that stays usable
		// rather than a reset.
		io.Copy(io.Discard, io.LimitReader(r, int64(limit-len(bb.b))))
	}
	if err != nil {
		bb.release()
		return nil, err
	}
	return bb, nil
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
