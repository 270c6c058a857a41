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
	"runtime/debug"
	"slices"
	"syscall"
	"time"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/ingest/workers"
	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/systemd"
)

// DefaultMemoryLimit is the Go heap's soft limit when GOMEMLIMIT does not
// set one: the garbage collector works harder as the heap nears it, which
// keeps the resident size of a busy server near 50 MiB (77 MiB without it,
// for batches of 100 from 256 connections) for about a tenth of the
// throughput of large batches. It is soft: a heap that needs more gets it.
const DefaultMemoryLimit = 32 << 20

// Build information, set by deploy/build with -ldflags -X.
var (
	version = "dev"
	commit  = ""
	target  = ""
)

func versionLine() string {
	c, t := commit, target
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && c == "" {
				c = s.Value
			}
		}
		if t == "" {
			t = bi.GoVersion
		}
	}
	if c == "" {
		c = "unknown"
	}
	return fmt.Sprintf("gocolytics %s (commit %s, %s)", version, c, t)
}

// run is the whole program: it reads the settings, opens the database,
// serves until ctx is done, then shuts down in order.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := LoadConfig(args, lookupEnv, stderr)
	if err != nil {
		return err
	}
	if cfg.Version {
		fmt.Fprintln(stdout, versionLine())
		return nil
	}
	logger := newLogger(stderr, cfg.LogLevel)
	if _, set := lookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(DefaultMemoryLimit)
	}
	if w, ok := workers.ThisWorker(); ok {
		return runWorker(ctx, cfg, args, w, stderr)
	}
	if cfg.Workers > 1 {
		return runSupervisor(ctx, cfg, args, stderr, logger) // workers.go
	}

	var cert *ingest.Certificate
	if cfg.TLSCertFile != "" {
		if cert, err = ingest.LoadCertificate(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return &configError{[]string{err.Error()}}
		}
	}

	db := shard.New(cfg.SQLiteFilePath, shardOptions(cfg), logger)
	metrics := ingest.NewMetrics()
	db.OnCommit = metrics.ObserveCommit
	if err := db.Open(); err != nil {
		return err
	}
	defer db.Close()

	ln, err := listen(cfg, logger)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	icfg := ingestConfig(cfg)
	icfg.Metrics = metrics
	fwd, err := startForwarder(cfg, logger, &icfg)
	if err != nil {
		return err
	}
	defer fwd.Close()
	srv := ingest.New(icfg, db, logger)
	adm, err := openAdmin(cfg, srv, db, logger)
	if err != nil {
		return err
	}
	defer adm.Close()
	served := make(chan error, 2)
	if cfg.Ops == ingest.OpsSeparate {
		opsLn, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("listen for /metrics: %w", err)
		}
		go func() { served <- srv.ServeOps(opsLn) }()
		logger.Info("serving /healthz and /metrics", "addr", opsLn.Addr().String())
	}
	if cert != nil {
		ln = cert.Listener(ln)
		logCertificate(logger, "https", cert)
	}
	go func() { served <- srv.Serve(ln) }()

	warnDevKey(logger, cfg)
	logger.Info("listening", "addr", ln.Addr().String(), "database", db.Path(), "api_keys", len(cfg.APIKeys), "rate_limit", cfg.RateLimit)
	logDashboardURL(logger, cfg.SQLiteFilePath, adm.generatedKey, ln.Addr(), cert != nil)

	if err := serveUntilDone(ctx, logger, func() string { return status(ln, db) + forwardStatus(fwd) }, writerProgress(db),
		func() { reload(args, srv, adm, cert, logger) }, served, "stopping: draining requests, committing what is queued"); err != nil {
		return err
	}
	logger.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	shutdownErr := srv.Shutdown(sctx)
	fwdErr := fwd.Close()
	closeErr := errors.Join(db.Close(), fwdErr)
	st := db.Stats()
	logger.Info("stopped", "events_stored", st.EventsStored)
	if shutdownErr != nil {
		return fmt.Errorf("shutdown: %w", shutdownErr)
	}
	return closeErr
}

// warnDevKey says loudly that the public dev key is accepted, if it is.
func warnDevKey(logger *slog.Logger, cfg *Config) {
	if slices.Contains(cfg.APIKeys, ingest.DevKey) {
		logger.Warn("THE PUBLIC DEV KEY IS ACCEPTED: anyone can write events. Set API_KEYS to your own keys before exposing this server.")
	}
}

// serveUntilDone tells systemd the server is ready (READY=1 only now: the
// database is open, the socket serves, and a SIGHUP — systemctl reload — is
// caught rather than fatal), keeps its status and watchdog going, reloads on
// SIGHUP, and returns after STOPPING=1 when ctx is done or a server stopped
// serving (with its error, if any).
func serveUntilDone(ctx context.Context, logger *slog.Logger, status func() string, progress func() systemd.Progress,
	reload func(), served <-chan error, stopping string) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	sd := systemd.New(logger)
	sd.Ready(status())
	stopNotify := sd.Start(status, progress)
	defer stopNotify()
	for {
		select {
		case <-hup:
			sd.Reloading()
			reload()
			sd.Ready(status())
		case err := <-served:
			if err != nil {
				return fmt.Errorf("serve: %w", err)
			}
			stopNotify()
			sd.Stopping(stopping)
			return nil
		case <-ctx.Done():
			stopNotify()
			sd.Stopping(stopping)
			return nil
		}
	}
}

// reload reads the settings again and applies the keys, rate limit and
// request limits, and re-reads the TLS certificate (from the files named at
// start). A bad new configuration or certificate keeps the old one.
func reload(args []string, srv *ingest.Server, adm *adminSide, cert *ingest.Certificate, logger *slog.Logger) {
	if err := cert.Reload(); err != nil {
		logger.Error("certificate reload failed; keeping the old certificate", "err", err)
	} else if cert != nil {
		logCertificate(logger, "certificate reloaded", cert)
	}
	cfg, err := LoadConfig(args, lookupEnv, io.Discard)
	if err != nil {
		logger.Error("reload failed; keeping the old settings", "err", err)
		return
	}
	srv.Reconfigure(ingestConfig(cfg))
	adm.reload(cfg)
	logger.Info("reloaded", "api_keys", len(cfg.APIKeys), "rate_limit", cfg.RateLimit)
}

func shardOptions(c *Config) shard.Options {
	return shard.Options{
		BusyTimeout:  c.BusyTimeout,
		Synchronous:  c.Synchronous,
		CacheSizeKiB: c.CacheSizeKiB,
		LocalTime:    c.LocalTime,
		// ERASE_EVENT_TYPE
		EraseEventType: c.DataOut.EraseEventType,
	}
}

func ingestConfig(c *Config) ingest.Config {
	return ingest.Config{
		Keys:             c.APIKeys,
		Limits:           c.Limits,
		Lenient:          c.LenientJSON,
		Rates:            c.Rates,
		TrustedProxies:   c.TrustedProxies,
		RateLimitClients: c.RateLimitClients,
		ReadTimeout:      c.ReadTimeout,
		WriteTimeout:     c.WriteTimeout,
		IdleTimeout:      c.IdleTimeout,
		MaxConnsPerIP:    c.MaxConnsPerIP,
		CORSOrigins:      c.CORSOrigins,
		DocsOff:          !c.Docs,
		DocsAssetsURL:    c.DocsAssetsURL,
		Ops:              c.Ops,
	}
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

func logCertificate(logger *slog.Logger, msg string, cert *ingest.Certificate) {
	leaf := cert.Leaf()
	logger.Info(msg, "subject", leaf.Subject.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
}
