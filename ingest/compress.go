package ingest

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"
)

var (
	bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	gzipPool sync.Pool // *gzip.Reader
)

// requestBody returns the request body, decompressed as its Content-Encoding
// says (gzip or deflate; none or identity as it came). The decompressed body
// is held to maxBytes: it is read through a limited reader, so a small
// gzip bomb costs at most maxBytes of memory and answers 413. Call release
// once the body is no longer used.
func requestBody(ctx *fasthttp.RequestCtx, maxBytes int) (body []byte, release func(), prob *Problem) {
	enc := strings.ToLower(strings.TrimSpace(string(ctx.Request.Header.ContentEncoding())))
	var kind string
	switch enc {
	case "", "identity":
		return ctx.PostBody(), func() {}, nil
	case "gzip", "x-gzip":
		kind = "gzip"
	case "deflate":
		kind = "deflate"
	default:
		return nil, nil, &Problem{Status: fasthttp.StatusUnsupportedMediaType,
			Detail: fmt.Sprintf("Unsupported Content-Encoding %q: send gzip, deflate or none", enc)}
	}
	raw := ctx.PostBody()
	r, err := decompressor(kind, raw)
	if err != nil {
		return nil, nil, corrupt(kind, err)
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	release = func() { bodyPool.Put(buf) }
	_, err = buf.ReadFrom(io.LimitReader(r, int64(maxBytes)+1))
	if gz, ok := r.(*gzip.Reader); ok {
		gzipPool.Put(gz)
	}
	switch {
	case buf.Len() > maxBytes:
		release()
		setReason(ctx, "body_too_large")
		return nil, nil, &Problem{Status: fasthttp.StatusRequestEntityTooLarge,
			Detail: fmt.Sprintf("Request body too large: over %d bytes once decompressed", maxBytes)}
	case err != nil:
		release()
		return nil, nil, corrupt(kind, err)
	}
	return buf.Bytes(), release, nil
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

func corrupt(kind string, err error) *Problem {
	return &Problem{Status: fasthttp.StatusBadRequest,
		Detail: fmt.Sprintf("Request body is not valid %s: %v", kind, err)}
}
