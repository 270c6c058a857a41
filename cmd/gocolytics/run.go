package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"slices"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/ingest/admin"
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
	if len(args) > 0 {
		if sub, ok := subcommands()[args[0]]; ok {
			return runSubcommand(ctx, sub, args[1:], stdout, stderr) // subcommands.go
		}
	}
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
		return runWorker(ctx, cfg, args, w, stderr) // workers.go
	}
	if cfg.Workers > 1 {
		return runSupervisor(ctx, cfg, args, stderr, logger) // workers.go
	}
	return runSingle(ctx, cfg, args, logger)
}

// single is the mode of one process that serves HTTP and owns the
// database.
type single struct {
	args   []string
	logger *slog.Logger
	b      *backend
	srv    *ingest.Server
	adm    *adminSide
	cert   *Certificate
	ln     net.Listener
	served <-chan error
}

// runSingle serves HTTP and commits in this one process (WORKERS=1).
func runSingle(ctx context.Context, cfg *Config, args []string, logger *slog.Logger) error {
	hup, stopHUP := catchReload()
	defer stopHUP()
	cert, err := loadCertificate(cfg)
	if err != nil {
		return err
	}
	icfg := ingestConfig(cfg)
	icfg.Metrics = ingest.NewMetrics()
	keyPath := admin.KeyFile(cfg.SQLiteFilePath)
	keyFresh := freshFile(keyPath)
	b, err := openBackend(cfg, logger, icfg.Metrics, &icfg)
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

	ln, err := listen(cfg, logger)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	m := &single{args: args, logger: logger, b: b, srv: ingest.New(icfg, b.db, logger), cert: cert}
	if m.adm, err = openAdmin(cfg, m.srv, b.db, logger); err != nil {
		return err
	}
	defer m.adm.Close()
	if m.ln, m.served, err = serveHTTP(cfg, m.srv, m.adm, ln, cert, true, logger); err != nil {
		ln.Close()
		return err
	}
	if cert != nil {
		logCertificate(logger, "https", cert)
	}
	warnDevKey(logger, cfg)
	logger.Info("listening", "addr", m.ln.Addr().String(), "database", b.db.Path(), "api_keys", len(cfg.APIKeys), "rate_limit", cfg.RateLimit)
	logDashboardURL(logger, cfg.SQLiteFilePath, m.adm.generatedKey, m.adm.dashboardAddr(m.ln.Addr()), cert != nil)
	started = true
	return serve(ctx, logger, m, b, hup, cfg.ShutdownTimeout, "stopping: draining requests, committing what is queued")
}

func (m *single) status() string             { return m.b.status("listening on " + m.ln.Addr().String()) }
func (m *single) progress() systemd.Progress { return m.b.progress() }
func (m *single) stopped() <-chan error      { return m.served }
func (m *single) drain(ctx context.Context) error {
	return errors.Join(m.srv.Shutdown(ctx), m.adm.drain(ctx))
}

// reload applies the keys, rate limit and request limits read again, and
// re-reads the TLS certificate (from the files named at start). A bad new
// configuration or certificate keeps the old one.
func (m *single) reload() {
	reloadCertificate(m.cert, m.logger)
	if cfg, ok := reloadSettings(m.args, m.logger); ok {
		m.srv.Reconfigure(ingestConfig(cfg))
		m.adm.reload(cfg)
		m.logger.Info("reloaded", "api_keys", len(cfg.APIKeys), "rate_limit", cfg.RateLimit)
	}
}

// warnDevKey says loudly that the public dev key is accepted, if it is.
func warnDevKey(logger *slog.Logger, cfg *Config) {
	if slices.Contains(cfg.APIKeys, ingest.DevKey) {
		logger.Warn("THE PUBLIC DEV KEY IS ACCEPTED: anyone can write events. Set API_KEYS to your own keys before exposing this server.")
	}
}

func shardOptions(c *Config) shard.Options {
	return shard.Options{
		BusyTimeout:        c.BusyTimeout,
		Synchronous:        c.Synchronous,
		CacheSizeKiB:       c.CacheSizeKiB,
		LocalTime:          c.LocalTime,
		MergeInterval:      c.MergeInterval,
		MergeRows:          c.MergeRows,
		MergeBudget:        c.MergeBudget,
		MergeQuietInterval: c.MergeQuietInterval,
		CommitQuietWait:    c.CommitQuietWait,
		SummaryInterval:    c.SummaryInterval,
		PageSize:           c.PageSize,
		WALAutocheckpoint:  c.WALAutocheckpoint,
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
		ClientIPHeader:   c.ClientIPHeader,
		RateLimitClients: c.RateLimitClients,
		ReadTimeout:      c.ReadTimeout,
		WriteTimeout:     c.WriteTimeout,
		IdleTimeout:      c.IdleTimeout,
		MaxConnsPerIP:    c.MaxConnsPerIP,
		MaxInflightBytes: c.MaxInflightBytes,
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
