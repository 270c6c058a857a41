package ingest

import (
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/gocolytics/gocolytics/ingest/ratelimit"
)

func init() {
	// # HELP and # TYPE lines, which Prometheus reads for counter and
	// histogram types.
	metrics.ExposeMetadata(true)
}

// Buckets of the histograms.
var (
	eventBuckets   = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000}
	secondsBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
)

// Metrics holds the counters /metrics exposes, in a metrics.Set of
// github.com/VictoriaMetrics/metrics: a small library (two tiny
// dependencies) whose Prometheus histograms, counters and gauges are what
// /metrics needs, where prometheus/client_golang would bring protobuf and a
// dozen modules. Create it before the
// database opens, so that the database's commit hook can feed it.
type Metrics struct {
	set           *metrics.Set
	stored        *metrics.Counter
	commitsOK     *metrics.Counter
	commitsFailed *metrics.Counter
	commitEvents  *metrics.PrometheusHistogram
	commitSeconds *metrics.PrometheusHistogram
	requestEvents *metrics.PrometheusHistogram
	// rowsErased and rowsPruned mirror the writer's counts of deleted rows
	// (erasure, retention), read at each scrape.
	rowsErased, rowsPruned *metrics.Counter
	monitor                atomic.Pointer[Monitor]
	extra                  []*metrics.Set
	limited                limitedClients
	// remote, when set, sends what this process observes of its requests
	// to the supervisor's Metrics instead (NewRemoteMetrics).
	remote *remote
	// requests caches the counter of each path and status (100 to 599).
	requests [len(metricPaths)][500]atomic.Pointer[metrics.Counter]
}

// NewMetrics returns empty metrics.
func NewMetrics() *Metrics {
	s := metrics.NewSet()
	m := &Metrics{
		set:           s,
		stored:        s.NewCounter("gocolytics_events_stored_total"),
		commitsOK:     s.NewCounter(`gocolytics_commits_total{result="ok"}`),
		commitsFailed: s.NewCounter(`gocolytics_commits_total{result="error"}`),
		commitEvents:  s.NewPrometheusHistogramExt("gocolytics_commit_events", eventBuckets),
		commitSeconds: s.NewPrometheusHistogramExt("gocolytics_commit_seconds", secondsBuckets),
		requestEvents: s.NewPrometheusHistogramExt("gocolytics_request_events", eventBuckets),
		rowsErased:    s.NewCounter(`gocolytics_rows_deleted_total{reason="erasure"}`),
		rowsPruned:    s.NewCounter(`gocolytics_rows_deleted_total{reason="retention"}`),
	}
	s.NewGauge("gocolytics_queued_events", func() float64 {
		if mon := m.monitor.Load(); mon != nil {
			return float64((*mon).Stats().QueuedEvents)
		}
		return 0
	})
	s.NewGauge("gocolytics_healthy", func() float64 {
		if mon := m.monitor.Load(); mon != nil && (*mon).Health() != nil {
			return 0
		}
		return 1
	})
	s.NewGauge("gocolytics_rate_limited_clients", func() float64 {
		return float64(m.limited.count(time.Now()))
	})
	return m
}

// maxLimitedClients bounds the clients limitedClients remembers.
const maxLimitedClients = 100_000

// limitedClients remembers the clients answered 429, each until its
// Retry-After has passed: those are the clients currently limited.
type limitedClients struct {
	mu    sync.Mutex
	until map[string]int64 // client key -> Unix nanoseconds
}

func (l *limitedClients) note(client string, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.until == nil {
		l.until = map[string]int64{}
	}
	if _, ok := l.until[client]; ok || len(l.until) < maxLimitedClients {
		l.until[client] = until.UnixNano()
	}
}

// count forgets the clients whose limit has passed and counts the others.
func (l *limitedClients) count(now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := now.UnixNano()
	for k, u := range l.until {
		if u <= n {
			delete(l.until, k)
		}
	}
	return len(l.until)
}

// noteLimited records that the client of a request was answered 429.
func (s *Server) noteLimited(ctx *fasthttp.RequestCtx) {
	p := s.policy.Load()
	if p == nil || p.rateLimit == nil {
		return
	}
	wait := time.Second
	if secs, err := strconv.Atoi(string(ctx.Response.Header.Peek(fasthttp.HeaderRetryAfter))); err == nil && secs > 0 {
		wait = time.Duration(secs) * time.Second
	}
	s.metrics.observeLimited(ratelimit.ClientKey(p.rateLimit.client(ctx)), wait)
}

// observeLimited records a client answered 429 that is to wait wait.
func (m *Metrics) observeLimited(client string, wait time.Duration) {
	if m.remote != nil {
		m.remote.limited(client, wait)
		return
	}
	m.limited.note(client, time.Now().Add(wait))
}

// observeRequestEvents records the events of one stored request.
func (m *Metrics) observeRequestEvents(n int) {
	if m.remote != nil {
		m.remote.events(n)
		return
	}
	m.requestEvents.Update(float64(n))
}

// Watch makes the gauges of the writer's state (queued events, healthy)
// read mon. ingest.New does it for a Committer that is a Monitor; the
// supervisor of worker processes does it for its database.
func (m *Metrics) Watch(mon Monitor) {
	m.monitor.Store(&mon)
}

// ObserveCommit records one transaction of the writer; it has the shape of
// shard.DB's OnCommit hook.
func (m *Metrics) ObserveCommit(events int, took time.Duration, err error) {
	if err != nil {
		m.commitsFailed.Inc()
	} else {
		m.commitsOK.Inc()
		m.stored.Add(events)
	}
	m.commitEvents.Update(float64(events))
	m.commitSeconds.Update(took.Seconds())
}

// metricPaths are the path labels of requests: the known paths, then
// "other", so that scanners cannot grow the label set.
var metricPaths = [...]string{"/v1.0/event", "/v1.0/events", "/healthz", "/metrics", "/docs", "/redoc", "/openapi.json", "other"}

func metricPath(p []byte) int {
	for i, known := range metricPaths[:len(metricPaths)-1] {
		if string(p) == known {
			return i
		}
	}
	return len(metricPaths) - 1
}

// reasonKey is the user value a handler sets to name why it rejected a
// request more precisely than its status does.
const reasonKey = "gocolytics.reason"

func setReason(ctx *fasthttp.RequestCtx, reason string) {
	ctx.SetUserValue(reasonKey, reason)
}

// rejectReason names why an ingest request was not stored.
func rejectReason(ctx *fasthttp.RequestCtx, status int) string {
	if r, ok := ctx.UserValue(reasonKey).(string); ok {
		return r
	}
	switch status {
	case fasthttp.StatusBadRequest:
		return "bad_request"
	case fasthttp.StatusUnauthorized:
		return "unauthorized"
	case fasthttp.StatusRequestTimeout:
		return "timeout"
	case fasthttp.StatusRequestEntityTooLarge:
		return "too_many_events"
	case fasthttp.StatusUnsupportedMediaType:
		return "unsupported_encoding"
	case fasthttp.StatusUnprocessableEntity:
		return "invalid"
	case fasthttp.StatusTooManyRequests:
		return "rate_limited"
	case fasthttp.StatusServiceUnavailable:
		return "unavailable"
	}
	return "status_" + strconv.Itoa(status)
}

// countRequest records a finished request: by path and status, and for an
// ingest request that was not stored, by reason.
func (m *Metrics) countRequest(ctx *fasthttp.RequestCtx) {
	status := ctx.Response.StatusCode()
	path := metricPath(ctx.Path())
	reason := ""
	if path <= 1 && status >= 400 {
		reason = rejectReason(ctx, status)
	}
	if m.remote != nil {
		m.remote.request(path, status, reason)
		return
	}
	m.observeRequest(path, status, reason)
}

// observeRequest counts one answered request of path (an index of
// metricPaths) and, when reason is set, one rejection for it.
func (m *Metrics) observeRequest(path, status int, reason string) {
	if status >= 100 && status < 600 {
		slot := &m.requests[path][status-100]
		c := slot.Load()
		if c == nil {
			c = m.set.GetOrCreateCounter(fmt.Sprintf(`gocolytics_requests_total{path=%q,code="%d"}`, metricPaths[path], status))
			slot.Store(c)
		}
		c.Inc()
	}
	if reason != "" {
		m.set.GetOrCreateCounter(`gocolytics_rejections_total{reason="` + reason + `"}`).Inc()
	}
}

// serveMetrics answers /metrics: every metric in Prometheus text format.
// A worker's remote Metrics answers with the supervisor's.
func (m *Metrics) serveMetrics(ctx *fasthttp.RequestCtx) {
	if m.remote != nil {
		m.remote.serve(ctx)
		return
	}
	ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	m.WriteText(ctx)
}

// WriteText writes every metric in Prometheus text format, with the
// process's own (CPU, memory, file descriptors, Go runtime).
func (m *Metrics) WriteText(w io.Writer) {
	if mon := m.monitor.Load(); mon != nil {
		st := (*mon).Stats()
		m.rowsErased.Set(st.RowsErased)
		m.rowsPruned.Set(st.RowsPruned)
	}
	m.set.WritePrometheus(w)
	for _, s := range m.extra {
		s.WritePrometheus(w)
	}
	metrics.WriteProcessMetrics(w)
}

// Add makes /metrics show another component's metrics too (the PostgreSQL
// forwarder's). Call it before serving.
func (m *Metrics) Add(s *metrics.Set) { m.extra = append(m.extra, s) }
