package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/ingest/admin"
	"github.com/gocolytics/gocolytics/ingest/dashboard"
	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/pgquery"
	"github.com/gocolytics/gocolytics/shard/query"
)

// adminSide is what a serving process holds for the admin endpoints: the
// key check (the dashboard guards its routes with it too) and the
// read-only handle.
type adminSide struct {
	Guard   *admin.Guard
	Limiter *ingest.RequestLimiter
	Reader  *query.Reader
	// mode and addr are ADMIN_ADDR; server serves the routes on addr
	// when mode is OpsSeparate.
	mode   ingest.OpsMode
	addr   string
	server *fasthttp.Server
	ln     net.Listener
	// generatedKey is the key from the file beside the database, when
	// ADMIN_KEYS is unset.
	generatedKey string
}

// adminKeys are the accepted admin keys: ADMIN_KEYS, or the key kept
// beside the database (made on first use), which is also returned.
func adminKeys(cfg *Config) (keys []string, generated string, err error) {
	if len(cfg.DataOut.AdminKeys) > 0 {
		return cfg.DataOut.AdminKeys, "", nil
	}
	key, _, err := admin.LoadOrCreateKey(cfg.SQLiteFilePath)
	if err != nil {
		return nil, "", fmt.Errorf("admin key: %w", err)
	}
	return []string{key}, key, nil
}

// valueAsker is the writer's side of the value field registry
// (shard.DB.AskValueField, or link.Client.AskValueField in a worker).
type valueAsker interface {
	AskValueField(application, eventType, field, path string)
}

// openAdmin opens the read-only handle and the key check, and registers the
// admin endpoints (erasing through eraser) and the dashboard with its stats
// API where ADMIN_ADDR says: on srv's router, on a router of their own
// (served by serve), or nowhere. The database must exist (the writer has
// opened it).
func openAdmin(cfg *Config, srv *ingest.Server, eraser admin.Eraser, logger *slog.Logger) (*adminSide, error) {
	keys, generated, err := adminKeys(cfg)
	if err != nil {
		return nil, err
	}
	// The writer registers the value fields asked for (shard's field
	// registry): the one in this process (shard.DB), or, in a worker, the
	// supervisor's, over the link (link.Client sends the asks without
	// making the request wait).
	var ask func(application, eventType, field, path string)
	if a, ok := eraser.(valueAsker); ok {
		ask = a.AskValueField
	}
	reader, err := openReader(cfg, ask)
	if err != nil {
		return nil, fmt.Errorf("open the database for reading: %w", err)
	}
	a := &adminSide{Limiter: ingest.NewRequestLimiter(ingestConfig(cfg), logger), Reader: reader, generatedKey: generated,
		mode: cfg.Admin, addr: cfg.AdminAddr}
	a.Guard = admin.NewGuard(keys, a.Limiter)
	r := srv.Router()
	switch cfg.Admin {
	case ingest.OpsOff:
		return a, nil
	case ingest.OpsSeparate:
		r = router.New()
		a.server = admin.NewServer(r.Handler, admin.ServerConfig{ReadTimeout: cfg.ReadTimeout, WriteTimeout: cfg.WriteTimeout,
			IdleTimeout: cfg.IdleTimeout, Logger: logger})
	}
	dashboard.New(dashboard.Config{Source: reader, Guard: a.Guard, LocalTime: cfg.LocalTime, Logger: logger}).Register(r)
	admin.New(admin.Config{
		Source:       reader,
		Eraser:       eraser,
		WriteTimeout: cfg.WriteTimeout,
		MaxIDLength:  cfg.Limits.MaxStringLength,
		Logger:       logger,
	}, a.Guard).Register(r)
	if r == srv.Router() {
		srv.KeepRawPaths(admin.UsersPath)
	}
	return a, nil
}

// openReader opens what the stats API, the dashboard and export read
// (STATS_SOURCE): read-only connections to the node's database, or to
// PostgreSQL, which holds every node's rows.
// ask, if set, is told of each value statistics request (query.Options).
func openReader(cfg *Config, ask func(application, eventType, field, path string)) (*query.Reader, error) {
	o := query.Options{BusyTimeout: cfg.BusyTimeout, LocalTime: cfg.LocalTime, AskValue: ask}
	if cfg.StatsSource == StatsPostgres {
		return pgquery.Open(cfg.Forward.PostgresURL, o)
	}
	return query.Open(cfg.SQLiteFilePath, o)
}

// serve listens on ADMIN_ADDR, when it names a listener of its own, and
// serves the admin routes there (with TLS when cert is set) until drain;
// a serve error arrives on served.
func (a *adminSide) serve(cert *Certificate, served chan<- error, logger *slog.Logger) error {
	if a.server == nil {
		return nil
	}
	ln, err := net.Listen("tcp", a.addr)
	if err != nil {
		return fmt.Errorf("listen for the dashboard and admin endpoints (ADMIN_ADDR): %w", err)
	}
	a.ln = ln
	if cert != nil {
		ln = cert.Listener(ln)
	}
	go func() { served <- a.server.Serve(ln) }()
	logger.Info("serving the dashboard, the stats API and the admin endpoints", "addr", a.ln.Addr().String())
	return nil
}

// dashboardAddr is where the dashboard is served: main, the main listener's
// address, unless ADMIN_ADDR moved it (nil when it is off).
func (a *adminSide) dashboardAddr(main net.Addr) net.Addr {
	switch {
	case a.mode == ingest.OpsOff:
		return nil
	case a.ln != nil:
		return a.ln.Addr()
	}
	return main
}

// drain stops the admin listener, if any, and waits for its requests
// until ctx is done; nil-safe.
func (a *adminSide) drain(ctx context.Context) error {
	if a == nil || a.server == nil || a.ln == nil {
		return nil
	}
	return a.server.ShutdownWithContext(ctx)
}

// reload applies reloaded settings: admin keys and the admin rate limit.
func (a *adminSide) reload(cfg *Config) {
	if a == nil {
		return
	}
	if keys, _, err := adminKeys(cfg); err == nil {
		a.Guard.SetKeys(keys)
	}
	a.Limiter.Reconfigure(ingestConfig(cfg))
}

// Close closes the read-only handle; nil-safe.
func (a *adminSide) Close() error {
	if a == nil {
		return nil
	}
	return a.Reader.Close()
}

// logDashboardURL logs, when the admin key is the generated one, the
// dashboard's address with the key in its fragment, the way Jupyter prints
// its token URL: the person at the machine is one click away. This line is
// the only place the key is ever written, besides its file.
func logDashboardURL(logger *slog.Logger, dbPath, key string, addr net.Addr, https bool) {
	if key == "" || addr == nil {
		return
	}
	logger.Info("dashboard (the admin key is in the link; keep it private)", "url", admin.DashboardURL(addr, https, key), "key_file", admin.KeyFile(dbPath))
}

// retentionEvery is how often retention deletes old rows.
const retentionEvery = time.Hour

// backupRetryMin is the first wait before a failed scheduled backup is
// tried again; it doubles up to BACKUP_INTERVAL.
const backupRetryMin = time.Minute

// startMaintenance starts what the process owning the writer does besides
// ingest: the control socket (for gocolytics forget), retention at start
// and hourly, and scheduled backups. The returned function stops them all
// and waits for them.
func startMaintenance(cfg *Config, db *shard.DB, logger *slog.Logger) func() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	stopControl := serveControl(cfg.SQLiteFilePath, db, logger)
	if days := cfg.DataOut.RetentionDays; days > 0 {
		wg.Go(func() { retain(ctx, db, days, logger.With("component", "retention")) })
	}
	if cfg.DataOut.BackupDir != "" {
		wg.Go(func() { scheduleBackups(ctx, cfg, logger.With("component", "backup")) })
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			stopControl()
		})
	}
}

// retain deletes rows older than days, now and then hourly, through the
// writer in chunks.
func retain(ctx context.Context, db *shard.DB, days int, logger *slog.Logger) {
	for {
		cutoff := time.Now().AddDate(0, 0, -days)
		start := time.Now()
		n, err := db.Prune(ctx, cutoff)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			logger.Error("retention failed; trying again in an hour", "deleted", n, "err", err)
		case n > 0:
			logger.Info("deleted old rows", "deleted", n, "older_than", cutoff.UTC().Format(time.RFC3339), "took", time.Since(start).Round(time.Millisecond).String())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retentionEvery):
		}
	}
}

// scheduleBackups takes a backup into BACKUP_DIR whenever the newest one is
// BACKUP_INTERVAL old (at once when there is none), keeps BACKUP_KEEP, and
// retries a failed one with backoff. It reads through its own read-only
// connection: ingest goes on meanwhile.
func scheduleBackups(ctx context.Context, cfg *Config, logger *slog.Logger) {
	dir, every, keep := cfg.DataOut.BackupDir, cfg.DataOut.BackupInterval, cfg.DataOut.BackupKeep
	retry := backupRetryMin
	for {
		wait := time.Duration(0)
		if _, times, err := shard.Backups(dir); err == nil && len(times) > 0 {
			wait = time.Until(times[len(times)-1].Add(every))
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		err := backupOnce(ctx, cfg.SQLiteFilePath, dir, keep, cfg.BusyTimeout, logger)
		if err == nil {
			retry = backupRetryMin
			continue
		}
		if ctx.Err() != nil {
			return
		}
		logger.Error("backup failed; trying again", "in", retry.String(), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
		retry = min(retry*2, every)
	}
}

// backupOnce takes one scheduled backup and rotates the old ones.
func backupOnce(ctx context.Context, dbPath, dir string, keep int, busy time.Duration, logger *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	start := time.Now()
	dst := filepath.Join(dir, shard.BackupName(start))
	size, err := shard.Backup(ctx, dbPath, dst, busy)
	if err != nil {
		return err
	}
	gone, err := shard.RotateBackups(dir, keep)
	logger.Info("backup written", "file", dst, "bytes", size, "took", time.Since(start).Round(time.Millisecond).String(), "deleted_old", len(gone))
	return err
}
