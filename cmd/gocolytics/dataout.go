package main

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/ingest/admin"
	"github.com/gocolytics/gocolytics/shard/query"
)

// adminSide is what a serving process holds for the admin endpoints: the
// key check (the dashboard guards its routes with it too) and the
// read-only handle.
type adminSide struct {
	Guard   *admin.Guard
	Limiter *ingest.RequestLimiter
	Reader  *query.Reader
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

// openAdmin opens the read-only handle and the key check, and registers the
// admin endpoints on srv's router, erasing through eraser. The database
// must exist (the writer has opened it).
func openAdmin(cfg *Config, srv *ingest.Server, eraser admin.Eraser, logger *slog.Logger) (*adminSide, error) {
	keys, generated, err := adminKeys(cfg)
	if err != nil {
		return nil, err
	}
	reader, err := query.Open(cfg.SQLiteFilePath, query.Options{BusyTimeout: cfg.BusyTimeout, LocalTime: cfg.LocalTime})
	if err != nil {
		return nil, fmt.Errorf("open the database for reading: %w", err)
	}
	a := &adminSide{Limiter: ingest.NewRequestLimiter(ingestConfig(cfg), logger), Reader: reader, generatedKey: generated}
	a.Guard = admin.NewGuard(keys, a.Limiter)
	admin.New(admin.Config{
		Reader:       reader,
		Eraser:       eraser,
		WriteTimeout: cfg.WriteTimeout,
		MaxIDLength:  cfg.Limits.MaxStringLength,
		Logger:       logger,
	}, a.Guard).Register(srv.Router())
	return a, nil
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
