package admin

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/shard/query"
)

// MaxExportLimit is the largest limit an export accepts.
const MaxExportLimit = 1_000_000_000

// Trailers of an export: the id of the last row written (the after_id
// that continues it) and the number of rows. They follow the body, since
// both are known only at its end; a client that cannot read trailers takes
// the id of the last row.
const (
	TrailerLastID = "X-Last-Id"
	TrailerRows   = "X-Rows"
)

// ExportRequest is an export's parameters, from a query string or the
// command line.
type ExportRequest struct {
	Format query.Format
	Filter query.ExportFilter
}

// ParseExportParams reads and checks an export's parameters; get returns a
// parameter's value and whether it was given. A bad one is a 422 naming
// it.
func ParseExportParams(get func(name string) (string, bool), maxLen int) (ExportRequest, *ingest.Problem) {
	var req ExportRequest
	bad := func(p, msg string) (ExportRequest, *ingest.Problem) { return req, paramProblem("query", p, msg) }
	var err error
	if v, ok := get("format"); ok {
		if req.Format, err = query.ParseFormat(v); err != nil {
			return bad("format", err.Error())
		}
	}
	for _, p := range []struct {
		name string
		dst  *string
	}{{"application", &req.Filter.Application}, {"event_type", &req.Filter.EventType}} {
		if v, ok := get(p.name); ok {
			if utf8.RuneCountInString(v) > maxLen {
				return bad(p.name, fmt.Sprintf("ensure this value has at most %d characters", maxLen))
			}
			*p.dst = v
		}
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &req.Filter.Since}, {"until", &req.Filter.Until}} {
		if v, ok := get(p.name); ok {
			if *p.dst, err = query.ParseInstant(v); err != nil {
				return bad(p.name, err.Error())
			}
		}
	}
	if f := req.Filter; !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return bad("until", "must be after since")
	}
	if v, ok := get("after_id"); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return bad("after_id", "must be a whole number, 0 or more")
		}
		req.Filter.AfterID = n
	}
	if v, ok := get("limit"); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || n > MaxExportLimit {
			return bad("limit", fmt.Sprintf("must be a whole number from 1 to %d", MaxExportLimit))
		}
		req.Filter.Limit = n
	}
	return req, nil
}

// export answers GET /v1.0/export: the rows streamed in id order, gzipped
// when the client accepts it, with the last id in a trailer.
func (h *Handlers) export(ctx *fasthttp.RequestCtx) {
	args := ctx.QueryArgs()
	req, prob := ParseExportParams(func(name string) (string, bool) {
		v := args.Peek(name)
		return string(v), v != nil
	}, h.cfg.MaxIDLength)
	if prob != nil {
		writeProblem(ctx, prob)
		return
	}
	if h.cfg.Source == nil {
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, (&ingest.Problem{Detail: "Export is not available"}).Body())
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType(req.Format.ContentType())
	ctx.Response.Header.Set(fasthttp.HeaderContentDisposition, `attachment; filename="events.`+req.Format.Ext()+`"`)
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	ctx.Response.Header.Set(fasthttp.HeaderVary, "Accept-Encoding")
	gz := ctx.Request.Header.HasAcceptEncoding("gzip")
	if gz {
		ctx.Response.Header.Set(fasthttp.HeaderContentEncoding, "gzip")
	}
	ctx.Response.Header.SetTrailer(TrailerLastID + ", " + TrailerRows)
	body := &exportBody{
		cursor:  h.cfg.Source.NewExport(req.Filter, req.Format),
		conn:    ctx.Conn(),
		header:  &ctx.Response.Header,
		timeout: h.cfg.WriteTimeout,
		log:     h.log,
	}
	if gz {
		body.zw, _ = gzip.NewWriterLevel(&body.out, gzip.BestSpeed)
	}
	ctx.SetBodyStream(body, -1)
}

// exportBody is an export's response body. fasthttp pulls it, chunk by
// chunk, in the goroutine that writes the response, after the header has
// gone out: so the trailers can be set at its end, and nothing of the
// request outlives the response.
type exportBody struct {
	cursor  query.ExportStream
	conn    net.Conn
	header  *fasthttp.ResponseHeader
	timeout time.Duration
	log     *slog.Logger
	zw      *gzip.Writer
	out     bytes.Buffer
	ended   bool
}

func (b *exportBody) Read(p []byte) (int, error) {
	for b.out.Len() == 0 {
		if b.ended {
			return 0, io.EOF
		}
		if err := b.fill(); err != nil {
			// The status has gone out: breaking the response off is the
			// only way left to tell the client it is incomplete.
			res := b.cursor.Result()
			b.log.Warn("export failed; response broken off", "rows", res.Rows, "err", err)
			b.ended = true
			return 0, err
		}
	}
	return b.out.Read(p)
}

// fill puts the next chunk into out, or ends the body.
func (b *exportBody) fill() error {
	// Each chunk gets WRITE_TIMEOUT to reach the client: a long export is
	// not cut off, a client that stops reading is.
	b.conn.SetWriteDeadline(time.Now().Add(b.timeout))
	chunk, err := b.cursor.Next(context.Background())
	if errors.Is(err, io.EOF) {
		b.ended = true
		if b.zw != nil {
			if err := b.zw.Close(); err != nil {
				return err
			}
		}
		res := b.cursor.Result()
		b.header.Set(TrailerLastID, strconv.FormatInt(res.LastID, 10))
		b.header.Set(TrailerRows, strconv.FormatInt(res.Rows, 10))
		return nil
	}
	if err != nil {
		return err
	}
	if b.zw != nil {
		_, err = b.zw.Write(chunk)
		return err
	}
	b.out.Write(chunk)
	return nil
}
