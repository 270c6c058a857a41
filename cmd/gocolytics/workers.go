package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/ingest/admin"
	"github.com/gocolytics/gocolytics/ingest/ratelimit"
	"github.com/gocolytics/gocolytics/ingest/workers"
	"github.com/gocolytics/gocolytics/shard/link"
	"github.com/gocolytics/gocolytics/systemd"
)

// workerStartTimeout is how long the supervisor waits for every worker to
// bind its socket and say hello.
const workerStartTimeout = 30 * time.Second

// supervisor is the mode of the process that owns the database and the
// rate budget while worker processes serve HTTP (WORKERS >= 2).
type supervisor struct {
	args    []string
	logger  *slog.Logger
	workers int
	addr    string
	b       *backend
	budget  *ratelimit.SharedBudget
	metrics *ingest.Metrics
	sup     *workers.Supervisor
}

// runSupervisor is run for WORKERS of 2 or more: this process owns the
// database and the rate budget, and worker processes serve HTTP.
func runSupervisor(ctx context.Context, cfg *Config, args []string, stderr io.Writer, logger *slog.Logger) error {
	hup, stopHUP := catchReload()
	defer stopHUP()
	// The workers load the certificate; a bad one is refused here, before
	// anything starts.
	if _, err := loadCertificate(cfg); err != nil {
		return err
	}
	// The forwarder runs here, beside the writer; the workers' /metrics
	// show it (it is in this Metrics) and their /healthz asks it here
	// (forwardAsk).
	// The one Metrics of the server: the writer feeds it here, the workers
	// send it their request records, and their /metrics show it.
	metrics := ingest.NewMetrics()
	keyPath := admin.KeyFile(cfg.SQLiteFilePath)
	keyFresh := freshFile(keyPath)
	b, err := openBackend(cfg, logger, metrics, &ingest.Config{Metrics: metrics})
	if err != nil {
		return err
	}
	defer b.close()
	started := false
	defer func() {
		if !started {
			b.abandon(keyPath, keyFresh)
		}
	}()
	metrics.Watch(b.db)

	// The workers read the generated admin key from its file: make it now.
	_, generatedKey, err := adminKeys(cfg)
	if err != nil {
		return err
	}
	socket, addr, err := workerSocket(cfg, logger)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer socket.Close()
	var inherited *os.File
	if addr == "" {
		inherited, addr = socket, socketAddr(socket)
	}
	m := &supervisor{args: args, logger: logger, workers: cfg.Workers, addr: addr, b: b, metrics: metrics,
		budget: ratelimit.NewSharedBudget(cfg.Rates, budgetOptions(cfg, logger))}
	m.sup = workers.NewSupervisor(workers.SupervisorConfig{
		Workers:  cfg.Workers,
		Args:     args,
		Listener: inherited,
		Addr:     addr,
		Stderr:   stderr,
		ServeLink: func(conn net.Conn, ready func()) error {
			return link.Serve(conn, b.db, link.Handlers{Ready: func(int) { ready() }, Call: m.answer})
		},
	}, logger)
	sctx, cancel := context.WithTimeout(ctx, workerStartTimeout)
	err = m.sup.Start(sctx)
	cancel()
	if err != nil {
		return fmt.Errorf("start workers: %w", err)
	}

	warnDevKey(logger, cfg)
	logger.Info("listening", "addr", addr, "database", b.db.Path(), "workers", cfg.Workers, "api_keys", len(cfg.APIKeys), "rate_limit", cfg.RateLimit)
	dashAddr := addr
	if cfg.Admin == ingest.OpsSeparate {
		dashAddr = cfg.AdminAddr
	}
	if tcp, err := net.ResolveTCPAddr("tcp", dashAddr); err == nil && cfg.Admin != ingest.OpsOff {
		logDashboardURL(logger, cfg.SQLiteFilePath, generatedKey, tcp, cfg.TLSCertFile != "")
	}
	started = true
	return serve(ctx, logger, m, b, hup, cfg.ShutdownTimeout, "stopping: draining workers, committing what is queued")
}

func (m *supervisor) status() string {
	return m.b.status(fmt.Sprintf("%d workers on %s", m.workers, m.addr))
}
func (m *supervisor) progress() systemd.Progress { return m.b.progress() }

// stopped never delivers: the supervisor restarts workers that die.
func (m *supervisor) stopped() <-chan error { return nil }

// drain stops every worker, each after draining its requests.
func (m *supervisor) drain(ctx context.Context) error { return m.sup.Shutdown(ctx) }

// reload applies the rate limit read again, here, and passes SIGHUP on:
// each worker reloads the rest itself (keys, limits, certificate).
func (m *supervisor) reload() {
	if cfg, ok := reloadSettings(m.args, m.logger); ok {
		m.budget.Reconfigure(cfg.Rates, budgetOptions(cfg, m.logger))
		m.logger.Info("reloaded", "rate_limit", cfg.RateLimit)
	}
	m.sup.Signal(syscall.SIGHUP)
}

// answer answers a worker's call on its link: a question for the rate
// budget, or the worker's metrics records and scrapes.
func (m *supervisor) answer(q []byte) []byte {
	if len(q) > 0 {
		switch q[0] {
		case ratelimit.BudgetAsk:
			return m.budget.Answer(q)
		case forwardAsk:
			return answerForward(m.b.fwd)
		}
	}
	return m.metrics.Answer(q)
}

// workerSocket returns the socket systemd passed (and an empty address:
// workers serve it), or else HOST:PORT reserved for the workers to bind
// with SO_REUSEPORT, and the address they bind.
func workerSocket(cfg *Config, logger *slog.Logger) (*os.File, string, error) {
	ln, err := systemdSocket(logger)
	if err != nil {
		return nil, "", err
	}
	if ln == nil {
		return workers.ReservePort(cfg.Host, cfg.Port)
	}
	defer ln.Close()
	fl, ok := ln.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, "", fmt.Errorf("systemd passed a %T, which cannot be handed to workers", ln)
	}
	f, err := fl.File()
	if err != nil {
		return nil, "", err
	}
	return f, "", nil
}

// socketAddr is the local address of a listening socket's file.
func socketAddr(f *os.File) string {
	ln, err := net.FileListener(f)
	if err != nil {
		return "?"
	}
	defer ln.Close()
	return ln.Addr().String()
}

// worker is the mode of a worker process: it serves HTTP on the socket the
// supervisor arranged and commits through the link.
type worker struct {
	args    []string
	logger  *slog.Logger
	number  int
	lc      *link.Client
	srv     *ingest.Server
	metrics *ingest.Metrics
	adm     *adminSide
	cert    *Certificate
	ln      net.Listener
	served  <-chan error
	done    chan error
}

// runWorker is run in a worker process. It exits when told to (SIGTERM,
// after draining) or when the link goes down (the supervisor is gone;
// nothing can be committed any more).
func runWorker(ctx context.Context, cfg *Config, args []string, w workers.WorkerProcess, stderr io.Writer) error {
	logger := newLogger(stderr, cfg.LogLevel).With("worker", w.Number)
	// A worker may get SIGTERM twice, from systemd (which signals the
	// whole control group) and from the supervisor: catching them here for
	// good keeps the second from killing it mid-drain. The supervisor's
	// SIGKILL after SHUTDOWN_TIMEOUT bounds the drain instead.
	term := make(chan os.Signal, 4)
	signal.Notify(term, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(term)
	hup, stopHUP := catchReload()
	defer stopHUP()
	cert, err := loadCertificate(cfg)
	if err != nil {
		return err
	}
	ln, err := w.Listen()
	if err != nil {
		return fmt.Errorf("worker %d: listen: %w", w.Number, err)
	}
	conn, err := w.Conn()
	if err != nil {
		ln.Close()
		return fmt.Errorf("worker %d: %w", w.Number, err)
	}
	lc, err := link.Dial(conn, w.Number)
	if err != nil {
		conn.Close()
		ln.Close()
		return fmt.Errorf("worker %d: link to the supervisor: %w", w.Number, err)
	}
	defer lc.Close()
	m := &worker{args: args, logger: logger, number: w.Number, lc: lc, cert: cert, done: make(chan error, 1)}
	m.metrics = ingest.NewRemoteMetrics(lc.Call)
	defer m.metrics.Close()
	icfg := workerConfig(cfg, lc)
	icfg.Metrics = m.metrics
	m.srv = ingest.New(icfg, lc, logger)
	if m.adm, err = openAdmin(cfg, m.srv, lc, logger); err != nil {
		ln.Close()
		return fmt.Errorf("worker %d: %w", w.Number, err)
	}
	defer m.adm.Close()
	// METRICS_ADDR and ADMIN_ADDR are one port each: worker 1 serves them.
	if m.ln, m.served, err = serveHTTP(cfg, m.srv, m.adm, ln, cert, w.Number == 1, logger); err != nil {
		ln.Close()
		return fmt.Errorf("worker %d: %w", w.Number, err)
	}
	go m.watch()
	logger.Debug("worker serving", "addr", m.ln.Addr().String(), "pid", os.Getpid())
	if err := serve(ctx, logger, m, nil, hup, cfg.ShutdownTimeout, "stopping"); err != nil {
		return fmt.Errorf("worker %d: %w", w.Number, err)
	}
	return nil
}

// watch delivers why the worker stops on its own: its link went down, or
// a listener stopped serving.
func (m *worker) watch() {
	select {
	case <-m.lc.Done():
		m.done <- fmt.Errorf("the supervisor is gone: %w", m.lc.Err())
	case err := <-m.served:
		if err == nil {
			err = errors.New("returned")
		}
		m.done <- fmt.Errorf("serve: %w", err)
	}
}

func (m *worker) status() string {
	return fmt.Sprintf("worker %d on %s", m.number, m.ln.Addr())
}

// progress is empty: the writer is the supervisor's, and systemd watches
// the supervisor alone.
func (m *worker) progress() systemd.Progress { return systemd.Progress{} }
func (m *worker) stopped() <-chan error      { return m.done }

// drain stops accepting and drains the requests, then sends the last
// metrics records.
func (m *worker) drain(ctx context.Context) error {
	err := errors.Join(m.srv.Shutdown(ctx), m.adm.drain(ctx))
	m.metrics.Close()
	return err
}

// reload applies the keys and limits read again and re-reads the
// certificate; the rate budget is the supervisor's.
func (m *worker) reload() {
	reloadCertificate(m.cert, m.logger)
	if cfg, ok := reloadSettings(m.args, m.logger); ok {
		m.srv.Reconfigure(workerConfig(cfg, m.lc))
		m.adm.reload(cfg)
		m.logger.Info("reloaded", "api_keys", len(cfg.APIKeys))
	}
}

// workerConfig is ingestConfig with the rate budget of the supervisor.
func workerConfig(cfg *Config, lc *link.Client) ingest.Config {
	c := ingestConfig(cfg)
	if len(c.Rates) > 0 {
		c.Budget = ratelimit.LinkBudget{Call: lc.Call}
	}
	if cfg.Forward.PostgresURL != "" {
		c.HealthNotes = append(c.HealthNotes, forwardNote(lc.Call))
	}
	return c
}

// budgetOptions are the options of the supervisor's rate budget.
func budgetOptions(cfg *Config, logger *slog.Logger) ratelimit.LocalOptions {
	return ratelimit.LocalOptions{MaxClients: cfg.RateLimitClients, Logger: logger.With("component", "ingest")}
}
