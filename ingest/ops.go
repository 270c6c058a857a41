package ingest

import (
	"context"
	"net"
	"sync/atomic"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/gocolytics/gocolytics/shard"
)

// Monitor is what /healthz and /metrics read from the Committer, when it
// implements it (shard.DB does).
type Monitor interface {
	// Health returns nil when events can be committed, else why not.
	Health() error
	// Stats returns the writer's counters.
	Stats() shard.Stats
}

// OpsMode says where /healthz and /metrics are served.
type OpsMode int

// The places /healthz and /metrics can be served.
const (
	// OpsShared serves them on the ingest listener.
	OpsShared OpsMode = iota
	// OpsSeparate serves them only on the listener given to ServeOps.
	OpsSeparate
	// OpsOff serves them nowhere.
	OpsOff
)

// extras is the state of what surrounds the ingest endpoints: CORS, docs,
// health and metrics.
type extras struct {
	cors    atomic.Pointer[cors]
	metrics *Metrics
	monitor Monitor
	notes   []HealthNote
	ops     *fasthttp.Server
}

// addExtras registers the routes around the ingest endpoints and puts the
// handlers into the middleware chain (chain.go). New calls it once the
// ingest routes and the fasthttp server exist.
func (s *Server) addExtras(cfg Config) {
	s.metrics = cfg.Metrics
	if s.metrics == nil {
		s.metrics = NewMetrics()
	}
	s.notes = cfg.HealthNotes
	if mon, ok := s.sink.(Monitor); ok {
		s.monitor = mon
		s.metrics.Watch(mon)
	}

	r := s.router
	// The router would answer OPTIONS itself with a bare 200; the ingest
	// paths answer CORS preflights instead, and other paths 405.
	r.HandleOPTIONS = false
	r.OPTIONS("/v1.0/event", s.preflight)
	r.OPTIONS("/v1.0/events", s.preflight)
	if !cfg.DocsOff {
		s.addDocs(r, cfg.DocsAssetsURL)
	}
	if cfg.Ops == OpsShared {
		s.addOps(r)
	}

	s.chain()

	opsRouter := router.New()
	opsRouter.NotFound = s.router.NotFound
	s.addOps(opsRouter)
	s.ops = &fasthttp.Server{
		Handler:              s.opsChain(opsRouter.Handler),
		Name:                 s.srv.Name,
		ReadTimeout:          s.srv.ReadTimeout,
		WriteTimeout:         s.srv.WriteTimeout,
		IdleTimeout:          s.srv.IdleTimeout,
		MaxRequestBodySize:   4096,
		NoDefaultContentType: true,
		CloseOnShutdown:      true,
		Logger:               s.srv.Logger,
	}
}

func (s *Server) addOps(r *router.Router) {
	r.GET("/healthz", s.healthz)
	r.HEAD("/healthz", s.healthz)
	r.GET("/metrics", s.metrics.serveMetrics)
}

// ServeOps serves /healthz and /metrics on ln until Shutdown, for OpsSeparate.
func (s *Server) ServeOps(ln net.Listener) error {
	return s.ops.Serve(ln)
}

// shutdownOps stops the listener of ServeOps, if it was served.
func (s *Server) shutdownOps(ctx context.Context) error {
	return s.ops.ShutdownWithContext(ctx)
}

// healthz answers 200 when events can be committed, 503 with the reason
// otherwise; either way it adds the state of each health note.
func (s *Server) healthz(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	ctx.SetContentType("application/json")
	b := []byte(`{"status":"ok"`)
	if s.monitor != nil {
		if err := s.monitor.Health(); err != nil {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			b = append([]byte(`{"status":"unavailable","detail":`), appendJSONString(nil, err.Error())...)
		}
	}
	for _, n := range s.notes {
		state := "ok"
		if err := n.Check(); err != nil {
			state = err.Error()
		}
		b = append(appendJSONString(append(b, ','), n.Name), ':')
		b = appendJSONString(b, state)
	}
	ctx.SetBody(append(b, '}'))
}
