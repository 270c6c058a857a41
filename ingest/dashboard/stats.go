// Package dashboard owns the read side's HTTP: the stats API (GET
// /v1.0/stats and its funnel, value, series, recent and applications
// endpoints) and the dashboard page with its embedded assets. Every route is
// guarded by the admin key; the statistics come from shard/query through a
// read-only handle.
package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/shard/query"
)

// Defaults of the stats API.
const (
	// DefaultRangeDays is the range of a request without since.
	DefaultRangeDays = 30
	// DefaultTimeout bounds the queries of one request.
	DefaultTimeout = 10 * time.Second
	// MaxParamLength bounds a text parameter, in characters.
	MaxParamLength = ingest.DefaultMaxStringLength
)

// Guard lets a request through (true) or answers it itself (401, 429).
// The admin key check of ingest/admin is one.
type Guard interface {
	Allow(ctx *fasthttp.RequestCtx) bool
}

// Config is what the stats API and the page need.
type Config struct {
	// Source answers the statistics: the node's SQLite through read-only
	// connections, or PostgreSQL (STATS_SOURCE=postgres).
	Source query.Source
	// Guard checks the admin key of every request.
	Guard Guard
	// LocalTime says the time column is in local time (LOCAL_TIME): "today"
	// is then the local day.
	LocalTime bool
	// Timeout bounds the queries of one request; 0 means DefaultTimeout.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Handlers serve the stats API and the dashboard.
type Handlers struct {
	cfg Config
	log *slog.Logger
}

// New returns the handlers. It does no I/O.
func New(cfg Config) *Handlers {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Handlers{cfg: cfg, log: cfg.Logger.With("component", "dashboard")}
}

// The stats API's paths.
const (
	StatsPath        = "/v1.0/stats"
	FunnelPath       = "/v1.0/stats/funnel"
	ValuePath        = "/v1.0/stats/value"
	SeriesPath       = "/v1.0/stats/series"
	RecentPath       = "/v1.0/stats/recent"
	ApplicationsPath = "/v1.0/stats/applications"
)

// Register adds the stats API and the dashboard to r.
func (h *Handlers) Register(r *router.Router) {
	r.GET(StatsPath, h.guarded(h.withFilter("series", h.stats)))
	r.GET(FunnelPath, h.guarded(h.withFilter("steps", h.funnel)))
	r.GET(ValuePath, h.guarded(h.withFilter("field", h.value)))
	r.GET(SeriesPath, h.guarded(h.withFilter("by", h.series)))
	r.GET(RecentPath, h.guarded(h.recent))
	r.GET(ApplicationsPath, h.guarded(h.applications))
	h.registerPage(r)
}

// handler computes an answer from a request's parameters within ctx, the
// request's time limit.
type handler func(ctx context.Context, p *params) (any, error)

// guarded answers with next only requests the Guard lets through, as JSON.
func (h *Handlers) guarded(next handler) fasthttp.RequestHandler {
	return func(rc *fasthttp.RequestCtx) {
		setSecurityHeaders(rc)
		rc.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
		if h.cfg.Guard == nil || !h.cfg.Guard.Allow(rc) {
			if h.cfg.Guard == nil {
				writeProblem(rc, &ingest.Problem{Status: fasthttp.StatusUnauthorized, Detail: "Invalid or missing admin key"})
			}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Timeout)
		defer cancel()
		v, err := next(ctx, &params{args: rc.QueryArgs()})
		if err == nil {
			var b []byte
			if b, err = json.Marshal(v); err == nil {
				rc.SetStatusCode(fasthttp.StatusOK)
				rc.SetContentType("application/json")
				rc.SetBody(b)
				return
			}
		}
		h.writeError(rc, timedOut(ctx, err))
	}
}

func (h *Handlers) writeError(ctx *fasthttp.RequestCtx, err error) {
	var pe *query.ParamError
	switch {
	case errors.As(err, &pe):
		writeProblem(ctx, &ingest.Problem{Status: fasthttp.StatusUnprocessableEntity,
			Fields: []ingest.FieldError{{Loc: []any{"query", pe.Param}, Msg: pe.Msg, Type: "value_error"}}})
	case errors.Is(err, context.DeadlineExceeded):
		writeProblem(ctx, &ingest.Problem{Status: fasthttp.StatusServiceUnavailable, Detail: "The query took too long; try a shorter range"})
	case errors.Is(err, query.ErrUnavailable):
		h.log.Warn("stats query failed", "path", string(ctx.Path()), "err", err)
		writeProblem(ctx, &ingest.Problem{Status: fasthttp.StatusServiceUnavailable, Detail: "The database cannot be reached"})
	default:
		h.log.Error("stats query failed", "path", string(ctx.Path()), "err", err)
		writeProblem(ctx, &ingest.Problem{Status: fasthttp.StatusInternalServerError, Detail: "Database error"})
	}
}

func writeProblem(ctx *fasthttp.RequestCtx, p *ingest.Problem) {
	ctx.SetStatusCode(p.Status)
	ctx.SetContentType("application/json")
	ctx.SetBody(p.Body())
}

// params reads a request's query parameters, remembering the first bad one.
type params struct {
	args *fasthttp.Args
	err  error
}

// text returns the parameter name, "" when absent.
func (p *params) text(name string) string {
	v := p.args.Peek(name)
	if p.err == nil {
		if !utf8.Valid(v) {
			p.err = &query.ParamError{Param: name, Msg: "must be UTF-8 text"}
		} else if utf8.RuneCount(v) > MaxParamLength {
			p.err = &query.ParamError{Param: name, Msg: fmt.Sprintf("ensure this value has at most %d characters", MaxParamLength)}
		}
	}
	return string(v)
}

// filter reads application, since, until, days, version, platform and
// event_type. until defaults to today (the server's day, local with
// LOCAL_TIME), since to days (default DefaultRangeDays) days ending with
// until: the dashboard's 7/30/90-day pickers send days, so that their days
// are the server's, whatever the browser's time zone.
func (h *Handlers) filter(p *params) query.Filter {
	f := query.Filter{Application: p.text("application"), Version: p.text("version"),
		Platform: p.text("platform"), EventType: p.text("event_type")}
	f.Until = h.today()
	for _, d := range []struct {
		name string
		dst  *time.Time
	}{{"until", &f.Until}, {"since", &f.Since}} {
		if v := p.text(d.name); v != "" && p.err == nil {
			t, err := query.ParseDay(d.name, v)
			if err != nil {
				p.err = err
			}
			*d.dst = t
		}
	}
	days := p.text("days")
	switch n, err := strconv.Atoi(days); {
	case days == "" || p.err != nil:
	case err != nil || n < 1 || n > query.MaxRangeDays:
		p.err = &query.ParamError{Param: "days", Msg: fmt.Sprintf("must be a whole number from 1 to %d", query.MaxRangeDays)}
	case !f.Since.IsZero():
		p.err = &query.ParamError{Param: "days", Msg: "give since or days, not both"}
	default:
		f.Since = f.Until.AddDate(0, 0, 1-n)
	}
	if f.Since.IsZero() {
		f.Since = f.Until.AddDate(0, 0, 1-DefaultRangeDays)
	}
	if p.err == nil {
		p.err = f.Validate()
	}
	return f
}

func (h *Handlers) today() time.Time { return query.Today(h.cfg.Now(), h.cfg.LocalTime) }

// timedOut marks err as a timeout when ctx's time ran out: SQLite reports
// an interrupted query as an ordinary error.
func timedOut(ctx context.Context, err error) error {
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %v", context.DeadlineExceeded, err)
	}
	return err
}

// withFilter is an endpoint over a Filter and one more parameter, extra:
// it reads and checks both, then runs compute within the time limit.
func (h *Handlers) withFilter(extra string, compute func(ctx context.Context, f query.Filter, v string) (any, error)) handler {
	return func(ctx context.Context, p *params) (any, error) {
		f := h.filter(p)
		v := p.text(extra)
		if p.err != nil {
			return nil, p.err
		}
		return compute(ctx, f, v)
	}
}

func (h *Handlers) stats(ctx context.Context, f query.Filter, series string) (any, error) {
	var list []string
	if series != "" {
		list = strings.Split(series, ",")
	}
	return h.cfg.Source.Stats(ctx, f, h.today(), list...)
}

func (h *Handlers) funnel(ctx context.Context, f query.Filter, steps string) (any, error) {
	list, err := query.ParseSteps(steps)
	if err != nil {
		return nil, err
	}
	return h.cfg.Source.Funnel(ctx, f, list)
}

func (h *Handlers) value(ctx context.Context, f query.Filter, field string) (any, error) {
	return h.cfg.Source.Value(ctx, f, field)
}

func (h *Handlers) series(ctx context.Context, f query.Filter, by string) (any, error) {
	return h.cfg.Source.Series(ctx, f, by)
}

func (h *Handlers) recent(ctx context.Context, p *params) (any, error) {
	app, limit := p.text("application"), p.text("limit")
	if p.err != nil {
		return nil, p.err
	}
	n, err := query.ParseLimit(limit)
	if err != nil {
		return nil, err
	}
	return h.cfg.Source.Recent(ctx, app, n)
}

func (h *Handlers) applications(ctx context.Context, _ *params) (any, error) {
	return h.cfg.Source.Applications(ctx)
}
