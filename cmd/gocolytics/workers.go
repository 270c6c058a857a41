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
	"github.com/gocolytics/gocolytics/ingest/ratelimit"
	"github.com/gocolytics/gocolytics/ingest/workers"
	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/link"
	"github.com/gocolytics/gocolytics/systemd"
)

// workerStartTimeout is how long the supervisor waits for every worker to
// bind its socket and say hello.
const workerStartTimeout = 30 * time.Second

// runSupervisor is run for WORKERS of 2 or more: this process owns the
// database and the rate budget, and worker processes serve HTTP.
func runSupervisor(ctx context.Context, cfg *Config, args []string, stderr io.Writer, logger *slog.Logger) error {
	if cfg.TLSCertFile != "" {
		// The workers load it; a bad one is refused here, before anything
		// starts.
		if _, err := ingest.LoadCertificate(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return &configError{[]string{err.Error()}}
		}
	}
	db := shard.New(cfg.SQLiteFilePath, shardOptions(cfg), logger)
	if err := db.Open(); err != nil {
		return err
	}
	defer db.Close()
	// The forwarder runs here, beside the writer; the workers' /healthz and
	// /metrics do not show it (the systemd status line does).
	fwd, err := startForwarder(cfg, logger, nil)
	if err != nil {
		return err
	}
	defer fwd.Close()

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
	budget := ratelimit.NewSharedBudget(cfg.Rates, budgetOptions(cfg, logger))
	sup := workers.NewSupervisor(workers.SupervisorConfig{
		Workers:  cfg.Workers,
		Args:     args,
		Listener: inherited,
		Addr:     addr,
		Stderr:   stderr,
		ServeLink: func(conn net.Conn, ready func()) error {
			return link.Serve(conn, db, link.Handlers{Ready: func(int) { ready() }, Call: budget.Answer})
		},
	}, logger)
	sctx, cancel := context.WithTimeout(ctx, workerStartTimeout)
	err = sup.Start(sctx)
	cancel()
	if err != nil {
		return fmt.Errorf("start workers: %w", err)
	}

	warnDevKey(logger, cfg)
	logger.Info("listening", "addr", addr, "database", db.Path(), "workers", cfg.Workers, "api_keys", len(cfg.APIKeys), "rate_limit", cfg.RateLimit)
	if tcp, err := net.ResolveTCPAddr("tcp", addr); err == nil {
		logDashboardURL(logger, cfg.SQLiteFilePath, generatedKey, tcp, cfg.TLSCertFile != "")
	}

	status := func() string {
		st := db.Stats()
		return fmt.Sprintf("%d workers on %s; %d events stored since start; %d queued", cfg.Workers, addr, st.EventsStored, st.QueuedEvents) + forwardStatus(fwd)
	}
	reload := func() {
		if c, err := LoadConfig(args, lookupEnv, io.Discard); err != nil {
			logger.Error("reload failed; keeping the old rate limit", "err", err)
		} else {
			budget.Reconfigure(c.Rates, budgetOptions(c, logger))
			logger.Info("reloaded", "rate_limit", c.RateLimit)
		}
		// Each worker reloads the rest itself: keys, limits, certificate.
		sup.Signal(syscall.SIGHUP)
	}
	if err := serveUntilDone(ctx, logger, status, writerProgress(db), reload, nil, "stopping: draining workers, committing what is queued"); err != nil {
		return err
	}

	logger.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	tctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	shutdownErr := sup.Shutdown(tctx)
	fwdErr := fwd.Close()
	closeErr := errors.Join(db.Close(), fwdErr)
	logger.Info("stopped", "events_stored", db.Stats().EventsStored)
	if shutdownErr != nil {
		return fmt.Errorf("shutdown: %w", shutdownErr)
	}
	return closeErr
}

// workerSocket returns the socket systemd passed (and an empty address:
// workers serve it), or else HOST:PORT reserved for the workers to bind
// with SO_REUSEPORT, and the address they bind.
func workerSocket(cfg *Config, logger *slog.Logger) (*os.File, string, error) {
	lns, err := systemd.Listeners()
	if err != nil {
		return nil, "", err
	}
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	switch len(lns) {
	case 0:
		return workers.ReservePort(cfg.Host, cfg.Port)
	case 1:
		fl, ok := lns[0].(interface{ File() (*os.File, error) })
		if !ok {
			return nil, "", fmt.Errorf("systemd passed a %T, which cannot be handed to workers", lns[0])
		}
		f, err := fl.File()
		if err != nil {
			return nil, "", err
		}
		logger.Info("using the socket systemd passed; HOST and PORT are not used", "addr", lns[0].Addr().String())
		return f, "", nil
	}
	return nil, "", fmt.Errorf("systemd passed %d sockets; give the .socket unit one ListenStream=", len(lns))
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

// runWorker is run in a worker process: it serves HTTP on the socket the
// supervisor arranged, commits through the link, and exits when told to
// (SIGTERM, after draining) or when the link goes down (the supervisor is
// gone; nothing can be committed any more).
func runWorker(ctx context.Context, cfg *Config, args []string, w workers.WorkerProcess, stderr io.Writer) error {
	logger := newLogger(stderr, cfg.LogLevel).With("worker", w.Number)
	// A worker may get SIGTERM twice, from systemd (which signals the
	// whole control group) and from the supervisor: catching them here for
	// good keeps the second from killing it mid-drain. The supervisor's
	// SIGKILL after SHUTDOWN_TIMEOUT bounds the drain instead.
	term := make(chan os.Signal, 4)
	signal.Notify(term, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(term)
	var cert *ingest.Certificate
	if cfg.TLSCertFile != "" {
		var err error
		if cert, err = ingest.LoadCertificate(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return &configError{[]string{err.Error()}}
		}
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
	srv := ingest.New(workerConfig(cfg, lc), lc, logger)
	adm, err := openAdmin(cfg, srv, nil, logger)
	if err != nil {
		return fmt.Errorf("worker %d: %w", w.Number, err)
	}
	defer adm.Close()
	if cert != nil {
		ln = cert.Listener(ln)
	}
	served := make(chan error, 2)
	if cfg.Ops == ingest.OpsSeparate && w.Number == 1 {
		// METRICS_ADDR is one port: worker 1 serves it, with its own
		// request counters and the writer's state.
		opsLn, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("worker %d: listen for /metrics: %w", w.Number, err)
		}
		go func() { served <- srv.ServeOps(opsLn) }()
	}
	go func() { served <- srv.Serve(ln) }()
	logger.Debug("worker serving", "addr", ln.Addr().String(), "pid", os.Getpid())

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if err := cert.Reload(); err != nil {
				logger.Error("certificate reload failed; keeping the old certificate", "err", err)
			}
			if c, err := LoadConfig(args, lookupEnv, io.Discard); err != nil {
				logger.Error("reload failed; keeping the old settings", "err", err)
			} else {
				srv.Reconfigure(workerConfig(c, lc))
				adm.reload(c)
			}
			continue
		case <-lc.Done():
			return fmt.Errorf("worker %d: the supervisor is gone: %w", w.Number, lc.Err())
		case err := <-served:
			if err != nil {
				return fmt.Errorf("worker %d: serve: %w", w.Number, err)
			}
			return errors.New("serve returned")
		case <-ctx.Done():
		}
		break
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("worker %d: shutdown: %w", w.Number, err)
	}
	return nil
}

// workerConfig is ingestConfig with the rate budget of the supervisor.
func workerConfig(cfg *Config, lc *link.Client) ingest.Config {
	c := ingestConfig(cfg)
	if len(c.Rates) > 0 {
		c.Budget = ratelimit.LinkBudget{Call: lc.Call}
	}
	return c
}

// budgetOptions are the options of the supervisor's rate budget.
func budgetOptions(cfg *Config, logger *slog.Logger) ratelimit.TollboothOptions {
	return ratelimit.TollboothOptions{MaxClients: cfg.RateLimitClients, Logger: logger.With("component", "ingest")}
}
