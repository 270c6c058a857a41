package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/gocolytics/gocolytics/ingest/ratelimit"

	"github.com/gocolytics/gocolytics/shard"
)

// Committer stores events. Write returns only once the events are committed
// (nil) or known not to be (an error), or, when a committer in another
// process went away with them (shard/link), with an error wrapping
// shard.ErrInDoubt: they may be stored. shardHint spreads callers over the
// Committer's queues.
type Committer interface {
	Write(shardHint int, events []shard.Event) error
}

// Defaults for the HTTP server.
const (
	DefaultReadTimeout   = 10 * time.Second
	DefaultWriteTimeout  = 10 * time.Second
	DefaultIdleTimeout   = 60 * time.Second
	DefaultConcurrency   = 64 * 1024
	DefaultMaxConnsPerIP = 1024
)

// Config is what the server needs to know. The zero value of each duration
// or count means its default.
type Config struct {
	Keys    []string
	Limits  Limits
	Lenient bool
	Rates   []ratelimit.Rate
	// TrustedProxies are the peers whose X-Forwarded-For and X-Real-IP are
	// believed; nil means ratelimit.DefaultTrustedProxies, an empty list none.
	// ClientIPHeader is the one header they name the client in; the zero
	// value, none, reads no header.
	TrustedProxies []netip.Prefix
	ClientIPHeader ratelimit.ClientIPHeader
	// RateLimitClients caps the clients the in-process budget tracks.
	RateLimitClients int
	// Budget, when set, replaces the in-process budget built from Rates
	// (a worker process passes one that asks the process holding it).
	Budget ratelimit.Budget

	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	Concurrency  int
	// MaxConnsPerIP caps the open connections from one client prefix: an
	// IPv4 address, or an IPv6 /64 (one host is usually given a whole
	// /64).
	MaxConnsPerIP int
	// MaxInflightBytes caps the request bodies held in memory at once, raw
	// and decompressed, over all requests (DefaultMaxInflightBytes). Set at
	// New; a reload does not change it.
	MaxInflightBytes int

	// CORSOrigins are the origins whose pages may post events (CORS); nil
	// or a list holding "*" means any, an empty non-nil list none.
	CORSOrigins []string
	// DocsOff turns off /docs, /redoc and /openapi.json.
	DocsOff bool
	// DocsAssetsURL is where /docs and /redoc load their scripts from;
	// empty means the public CDN.
	DocsAssetsURL string
	// Ops says where /healthz and /metrics are served.
	Ops OpsMode
	// Metrics collects what /metrics shows; nil means new ones.
	Metrics *Metrics
	// HealthNotes are parts of the node that do not stop ingest when they
	// fail (the PostgreSQL forwarder): /healthz stays 200 and shows each
	// note's state under its name, "ok" or the error.
	HealthNotes []HealthNote
}

// HealthNote is one named check /healthz reports without failing on it.
type HealthNote struct {
	Name  string
	Check func() error
}

// policy is the part of the configuration a reload may change; handlers read
// it through one atomic pointer, so a reload applies to whole requests.
type policy struct {
	keys    *Keys
	limits  Limits
	lenient bool

	rateLimit *rateLimit
}

// Server is the HTTP front end.
type Server struct {
	logger *slog.Logger
	sink   Committer
	policy atomic.Pointer[policy]
	srv    *fasthttp.Server
	router *router.Router
	// rawPrefixes are the paths routed as sent (KeepRawPaths).
	rawPrefixes [][]byte
	// inflight is the budget of request bodies in memory; conns counts
	// open connections per client prefix.
	inflight *inflight
	conns    *connCap
	extras
}

var decodedPool = sync.Pool{New: func() any { return new(Decoded) }}

// New returns a Server that hands events to sink. It does no I/O.
func New(cfg Config, sink Committer, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{
		logger:   logger.With("component", "ingest"),
		sink:     sink,
		inflight: &inflight{max: int64(orDefault(cfg.MaxInflightBytes, DefaultMaxInflightBytes))},
		conns:    newConnCap(orDefault(cfg.MaxConnsPerIP, DefaultMaxConnsPerIP)),
	}
	s.Reconfigure(cfg)

	r := router.New()
	// The Godot client follows no redirect: it would lose the batch.
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	r.NotFound = func(ctx *fasthttp.RequestCtx) { writeDetail(ctx, fasthttp.StatusNotFound, "Not Found") }
	r.MethodNotAllowed = func(ctx *fasthttp.RequestCtx) {
		writeDetail(ctx, fasthttp.StatusMethodNotAllowed, "Method Not Allowed")
	}
	r.POST("/v1.0/event", func(ctx *fasthttp.RequestCtx) { s.ingest(ctx, false) })
	r.POST("/v1.0/events", func(ctx *fasthttp.RequestCtx) { s.ingest(ctx, true) })
	s.router = r

	s.srv = &fasthttp.Server{
		Handler:      s.handle,
		ErrorHandler: s.errorHandler,
		Name:         "gocolytics",
		ReadTimeout:  orDefault(cfg.ReadTimeout, DefaultReadTimeout),
		WriteTimeout: orDefault(cfg.WriteTimeout, DefaultWriteTimeout),
		IdleTimeout:  orDefault(cfg.IdleTimeout, DefaultIdleTimeout),
		Concurrency:  orDefault(cfg.Concurrency, DefaultConcurrency),
		// Connections are capped per client prefix by s.conns instead of
		// fasthttp's per-address MaxConnsPerIP.
		MaxRequestBodySize: orDefault(cfg.Limits.MaxBodyBytes, DefaultMaxBodyBytes),
		// Bodies are streamed: fasthttp reads at most 8 KiB of a body
		// before the handler runs, instead of a buffer of the announced
		// Content-Length; the handler reads the rest under the in-flight
		// budget, after the path, method and rate limit are checked.
		StreamRequestBody:    true,
		NoDefaultContentType: true,
		// A multipart body is never an event: the handler refuses it
		// rather than fasthttp parsing it (and spilling large parts to
		// temporary files) before the handler runs.
		DisablePreParseMultipartForm: true,
		// Errors reading a request neither quote it in the 400 nor in the
		// log: it may carry credentials.
		SecureErrorLogMessage: true,
		CloseOnShutdown:       true,
		TCPKeepalive:          true,
		Logger:                fasthttpLogger{s.logger},
	}
	s.addExtras(cfg)
	return s
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Reconfigure applies the keys, limits and rates of cfg to every request that
// starts after it returns. Requests under way finish under the old ones.
func (s *Server) Reconfigure(cfg Config) {
	lim := cfg.Limits
	def := DefaultLimits()
	lim.MaxBodyBytes = orDefault(lim.MaxBodyBytes, def.MaxBodyBytes)
	lim.MaxBatchEvents = orDefault(lim.MaxBatchEvents, def.MaxBatchEvents)
	lim.MaxStringLength = orDefault(lim.MaxStringLength, def.MaxStringLength)
	lim.MaxValueBytes = orDefault(lim.MaxValueBytes, def.MaxValueBytes)
	lim.MaxDepth = orDefault(lim.MaxDepth, def.MaxDepth)
	s.policy.Store(&policy{keys: NewKeys(cfg.Keys), limits: lim, lenient: cfg.Lenient, rateLimit: s.rateLimitFor(cfg)})
	s.cors.Store(newCORS(cfg.CORSOrigins))
}

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.srv.Serve(s.conns.listener(ln))
}

// Shutdown stops accepting connections and waits, until ctx is done, for the
// requests under way to be answered.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.ShutdownWithContext(ctx)
	if opsErr := s.shutdownOps(ctx); err == nil {
		err = opsErr
	}
	return err
}

// handle routes a request. Only the two ingest paths get the clean-up
// Pycolytics clients rely on: "//v1.0/events" and "/v1.0/events/" are served
// as "/v1.0/events", never redirected. Every other route matches the path
// exactly as sent: "/metrics/", "/metrics%2F" and "/metrics/." are 404, so a
// proxy rule written for "/metrics" cannot be walked around.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	uri := ctx.URI()
	orig, clean := uri.PathOriginal(), uri.Path()
	n := len(clean)
	for n > 1 && clean[n-1] == '/' {
		n--
	}
	switch {
	case isIngestPath(clean[:n]):
		// The router matches the path as sent: give it the clean one.
		if !bytes.Equal(orig, clean[:n]) {
			uri.SetPathBytes(append([]byte(nil), clean[:n]...))
		}
	case !bytes.Equal(orig, clean) && !s.rawPath(orig):
		writeDetail(ctx, fasthttp.StatusNotFound, "Not Found")
		return
	default:
		// Other routes get their body (if any) read here, under the same
		// limit and in-flight budget, so that their handlers can use
		// PostBody as usual.
		if ctx.Request.Header.ContentLength() != 0 && ctx.RequestBodyStream() != nil {
			bb, err := readRequestBody(ctx, s.policy.Load().limits.MaxBodyBytes, s.inflight, false)
			if err != nil {
				writeProblem(ctx, bodyProblem(ctx, err))
				return
			}
			defer bb.release()
			ctx.Request.SetBodyRaw(bb.b)
		}
	}
	s.router.Handler(ctx)
}

func (s *Server) ingest(ctx *fasthttp.RequestCtx, batch bool) {
	p := s.policy.Load()
	if !p.rateLimit.allow(ctx) {
		return
	}
	d := decodedPool.Get().(*Decoded)
	defer func() {
		d.Reset()
		decodedPool.Put(d)
	}()
	bb, prob := s.requestBody(ctx, p.limits.MaxBodyBytes)
	if prob != nil {
		writeProblem(ctx, prob)
		return
	}
	defer bb.release()
	// The decoded events are copies, about as large as the body: they are
	// charged to the in-flight budget too, until they are committed.
	if !bb.takeDecoded() {
		writeProblem(ctx, bodyProblem(ctx, errOverBudget))
		return
	}
	if prob := Decode(bb.b, batch, p.lenient, p.limits, d); prob != nil {
		writeProblem(ctx, prob)
		return
	}
	bb.dropLarge()
	var last []byte
	for _, k := range d.Keys {
		if last != nil && bytes.Equal(k, last) {
			continue
		}
		if !p.keys.Valid(k) {
			writeDetail(ctx, fasthttp.StatusUnauthorized, "Invalid or missing API Key")
			return
		}
		last = k
	}
	now := time.Now()
	for i := range d.Events {
		d.Events[i].Time = now
	}
	if err := s.sink.Write(int(ctx.ConnID()), d.Events); err != nil {
		writeDetail(ctx, fasthttp.StatusServiceUnavailable, unavailable(err))
		return
	}
	s.metrics.observeRequestEvents(len(d.Events))
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

// unavailable words a commit failure for the client: none of the events of
// the request was stored, unless the outcome is in doubt, which it says
// rather than claim they were not (a client that sends them again may
// store them twice).
func unavailable(err error) string {
	switch {
	case errors.Is(err, shard.ErrInDoubt):
		return "Server is shutting down: the events may have been stored"
	case errors.Is(err, shard.ErrDiskFull):
		return "Database is full: the events were not stored"
	case errors.Is(err, shard.ErrBusy):
		return "Database is locked by another process: the events were not stored"
	case errors.Is(err, shard.ErrClosed):
		return "Server is shutting down: the events were not stored"
	}
	return "Database error: the events were not stored"
}

func writeProblem(ctx *fasthttp.RequestCtx, p *Problem) {
	ctx.SetStatusCode(p.Status)
	ctx.SetContentType("application/json")
	ctx.SetBody(p.Body())
}

func writeDetail(ctx *fasthttp.RequestCtx, status int, detail string) {
	writeProblem(ctx, &Problem{Status: status, Detail: detail})
}

// errorHandler answers requests fasthttp could not read, in JSON. The answer
// quotes none of the request's bytes (a header line may hold a key); the
// reason goes to the debug log, with quoted request bytes cut out.
func (s *Server) errorHandler(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeDetail(ctx, fasthttp.StatusRequestEntityTooLarge, "Request body too large")
	case errors.As(err, &small):
		writeDetail(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, "Request header too large")
	default:
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() {
			writeDetail(ctx, fasthttp.StatusRequestTimeout, "Request Timeout")
			return
		}
		s.logger.Debug("request not read", "reason", redactQuoted(err.Error()))
		writeDetail(ctx, fasthttp.StatusBadRequest, "Bad Request")
	}
}

// redactQuoted cuts what fasthttp quotes of a request out of an error text:
// `missing colon: "BadHeaderKEY": buffer size=79` becomes
// `missing colon: "…"`. Everything from the first quote on goes, since a
// quoted part may itself hold escaped quotes.
func redactQuoted(msg string) string {
	if i := strings.IndexByte(msg, '"'); i >= 0 {
		return msg[:i] + `"…"`
	}
	return msg
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug(fmt.Sprintf(format, args...))
}
