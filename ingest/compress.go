package ingest

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"
)

var gzipPool sync.Pool // *gzip.Reader

// requestBody reads the request body under the in-flight budget and
// decompresses it as its Content-Encoding says (gzip or deflate; none or
// identity as it came). An unknown encoding is refused before the body is
// read. Raw and decompressed bodies are each held to maxBytes and charged to
// the budget as they grow, so a gzip bomb costs at most maxBytes and answers
// 413. The caller releases the returned buffer once the body is no longer
// used.
func (s *Server) requestBody(ctx *fasthttp.RequestCtx, maxBytes int) (*bodyBuf, *Problem) {
	enc := strings.ToLower(strings.TrimSpace(string(ctx.Request.Header.ContentEncoding())))
	var kind string
	switch enc {
	case "", "identity":
	case "gzip", "x-gzip":
		kind = "gzip"
	case "deflate":
		kind = "deflate"
	default:
		return nil, &Problem{Status: fasthttp.StatusUnsupportedMediaType,
			Detail: fmt.Sprintf("Unsupported Content-Encoding %q: send gzip, deflate or none", enc)}
	}
	raw, err := readRequestBody(ctx, maxBytes, s.inflight, kind == "")
	if err != nil {
		return nil, bodyProblem(ctx, err)
	}
	if kind == "" {
		return raw, nil
	}
	defer raw.release()
	r, err := decompressor(kind, raw.b)
	if err != nil {
		return nil, corrupt(kind, err)
	}
	out := getBodyBuf(s.inflight, gzipSize(kind, raw.b, maxBytes), true)
	err = out.readFrom(r, maxBytes)
	if gz, ok := r.(*gzip.Reader); ok {
		gzipPool.Put(gz)
	}
	switch {
	case err == nil:
		return out, nil
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		out.release()
		setReason(ctx, "body_too_large")
		return nil, &Problem{Status: fasthttp.StatusRequestEntityTooLarge,
			Detail: fmt.Sprintf("Request body too large: over %d bytes once decompressed", maxBytes)}
	case errors.Is(err, errOverBudget):
		out.release()
		return nil, bodyProblem(ctx, err)
	}
	out.release()
	return nil, corrupt(kind, err)
}

// decompressor returns a reader of raw decompressed as kind. Deflate is
// zlib-wrapped by the HTTP standard, but some clients send raw deflate: a
// body without a zlib header is read as raw deflate.
func decompressor(kind string, raw []byte) (io.Reader, error) {
	if kind == "gzip" {
		if gz, ok := gzipPool.Get().(*gzip.Reader); ok {
			if err := gz.Reset(bytes.NewReader(raw)); err != nil {
				gzipPool.Put(gz)
				return nil, err
			}
			return gz, nil
		}
		return gzip.NewReader(bytes.NewReader(raw))
	}
	if zr, err := zlib.NewReader(bytes.NewReader(raw)); err == nil {
		return zr, nil
	}
	return flate.NewReader(bytes.NewReader(raw)), nil
}

// gzipSize is the size a gzip body says it expands to (its trailer's ISIZE),
// or -1 when unknown or over maxBytes. It is only a hint for the in-flight
// budget: the body is still held to maxBytes as it expands.
func gzipSize(kind string, raw []byte, maxBytes int) int {
	if kind != "gzip" || len(raw) < 18 {
		return -1
	}
	n := int(binary.LittleEndian.Uint32(raw[len(raw)-4:]))
	if n > maxBytes {
		return -1
	}
	return n
}

func corrupt(kind string, err error) *Problem {
	return &Problem{Status: fasthttp.StatusBadRequest,
		Detail: fmt.Sprintf("Request body is not valid %s: %v", kind, err)}
}
