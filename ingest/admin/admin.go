package admin

import (
	"context"
	"log/slog"
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/shard/query"
)

// Eraser deletes every row of a user (of one application, unless it is
// empty) and returns how many, once the deletion is committed. shard.DB
// runs it through its writer; a worker process's link sends it there.
type Eraser interface {
	Erase(ctx context.Context, userID, application string) (int64, error)
}

// DefaultMaxIDLength bounds the user id and the filters of admin requests,
// in characters: ingest's MAX_STRING_LENGTH default, so no stored row can
// have a longer one.
const DefaultMaxIDLength = ingest.DefaultMaxStringLength

// Config is what the admin endpoints need; nil parts answer 503.
type Config struct {
	// Source is what exports read: the node's SQLite through read-only
	// connections, or PostgreSQL (STATS_SOURCE=postgres).
	Source query.Source
	// Eraser runs erasures through the one writer.
	Eraser Eraser
	// WriteTimeout is how long each chunk of an export may take to be
	// written to the client (the server's WRITE_TIMEOUT).
	WriteTimeout time.Duration
	// MaxIDLength bounds user ids and filters, in characters (422 above).
	MaxIDLength int
	Logger      *slog.Logger
}

// Handlers are the admin endpoints of getting data out.
type Handlers struct {
	cfg   Config
	guard *Guard
	log   *slog.Logger
}

// New returns the endpoints, each guarded by g.
func New(cfg Config, g *Guard) *Handlers {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = ingest.DefaultWriteTimeout
	}
	if cfg.MaxIDLength <= 0 {
		cfg.MaxIDLength = DefaultMaxIDLength
	}
	return &Handlers{cfg: cfg, guard: g, log: cfg.Logger.With("component", "admin")}
}

// The admin paths.
const (
	ExportPath = "/v1.0/export"
	UsersPath  = "/v1.0/users/"
)

// EraseHandler is the erasure endpoint without the key check, for the
// control socket, whose file permissions are its check.
func (h *Handlers) EraseHandler() fasthttp.RequestHandler { return h.erase }

// Register adds the endpoints to r: GET /v1.0/export and
// DELETE /v1.0/users/{user_id}.
func (h *Handlers) Register(r *router.Router) {
	r.GET(ExportPath, h.guard.Wrap(h.export))
	r.DELETE(UsersPath+"{user_id:*}", h.guard.Wrap(h.erase))
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, body []byte) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

func writeProblem(ctx *fasthttp.RequestCtx, p *ingest.Problem) {
	writeJSON(ctx, p.Status, p.Body())
}

// paramProblem is a 422 naming one parameter, in FastAPI's shape:
// {"detail":[{"loc":["query","limit"],"msg":...,"type":"value_error"}]}.
func paramProblem(where, param, msg string) *ingest.Problem {
	return &ingest.Problem{Status: fasthttp.StatusUnprocessableEntity,
		Fields: []ingest.FieldError{{Loc: []any{where, param}, Msg: msg, Type: "value_error"}}}
}
