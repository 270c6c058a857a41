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
	"strconv"
	"syscall"
	"time"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/forward"
	"github.com/gocolytics/gocolytics/systemd"
)

// A mode is one way this process serves: a single process (single), the
// supervisor of worker processes (supervisor), or one worker (worker).
// serve drives every mode through the same lifecycle.
type mode interface {
	// status is the one-line summary `systemctl status` shows.
	status() string
	// progress tells the watchdog whether the database writer is moving.
	progress() systemd.Progress
	// reload applies the settings, read again on SIGHUP.
	reload()
	// stopped delivers why the mode stopped serving on its own: nil for
	// an end that shuts down in order, or an error, returned at once.
	stopped() <-chan error
	// drain stops accepting and drains the requests under way, which
	// still get their commit outcomes.
	drain(ctx context.Context) error
}

// backend is what a process that owns the database runs beside HTTP: the
// database and its writer, and the PostgreSQL forwarder (nil when off).
type backend struct {
	db  *shard.DB
	fwd *forward.Forwarder
	// stopMaintenance stops the control socket, retention and scheduled
	// backups (dataout.go), and LOCAL_RETENTION_DAYS (forward.go).
	stopMaintenance func()
}

// openBackend opens the database, its writer feeding metrics (when set),
// then starts the forwarder, which icfg's /metrics and /healthz show when
// icfg is set.
func openBackend(cfg *Config, logger *slog.Logger, metrics *ingest.Metrics, icfg *ingest.Config) (*backend, error) {
	writerProcs()
	db := shard.New(cfg.SQLiteFilePath, shardOptions(cfg), logger)
	if metrics != nil {
		db.OnCommit = metrics.ObserveCommit
	}
	if err := db.Open(); err != nil {
		return nil, err
	}
	fwd, err := startForwarder(cfg, logger, icfg)
	if err != nil {
		db.Close()
		return nil, err
	}
	if fwd != nil {
		// Erasure (the admin API, gocolytics forget) reaches PostgreSQL.
		db.AfterErase = fwd.Erase
	}
	stopLocal, stopMaintenance := startLocalRetention(cfg, db, fwd, logger), startMaintenance(cfg, db, logger)
	return &backend{db: db, fwd: fwd, stopMaintenance: func() { stopLocal(); stopMaintenance() }}, nil
}

// abandon closes the backend of a start that failed after openBackend and
// removes what that start created (the database, its folders, the admin key
// file when keyFresh), so that the folder is left as it was.
func (b *backend) abandon(keyPath string, keyFresh bool) {
	b.close()
	if keyFresh {
		os.Remove(keyPath)
	}
	b.db.RemoveCreated()
}

// freshFile says path does not exist yet.
func freshFile(path string) bool {
	_, err := os.Lstat(path)
	return errors.Is(err, os.ErrNotExist)
}

// close stops the maintenance jobs and the forwarder, then commits what is
// queued and closes the database. Each step is idempotent: serve closes,
// and a deferred close after it does nothing.
func (b *backend) close() error {
	b.stopMaintenance()
	fwdErr := b.fwd.Close()
	return errors.Join(b.db.Close(), fwdErr)
}

// status is the status line of a process that owns the database: where it
// listens, then the writer's counters and the forwarder's lag.
func (b *backend) status(where string) string {
	st := b.db.Stats()
	s := fmt.Sprintf("%s; %d events stored since start; %d queued", where, st.EventsStored, st.QueuedEvents)
	if st.LastError != nil {
		s += fmt.Sprintf("; last commit failed: %v", st.LastError)
	}
	return s + forwardStatus(b.fwd)
}

// progress tells the watchdog whether the database writer is moving.
func (b *backend) progress() systemd.Progress {
	st := b.db.Stats()
	return systemd.Progress{Busy: st.Stuck, Queued: st.QueuedEvents, Done: st.Commits + st.FailedCommits}
}

// catchReload catches SIGHUP (systemctl reload) into the channel serve
// reads, from the start of a mode: a reload that comes before the mode
// serves is kept for serve, never fatal. A worker needs it most: the
// supervisor passes a SIGHUP on as soon as every worker has said hello,
// before the worker serves. stop ends the catching.
func catchReload() (hup chan os.Signal, stop func()) {
	hup = make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup, func() { signal.Stop(hup) }
}

// serve is the lifecycle of every mode. It tells systemd the server is
// ready (READY=1 only now: the database is open, the socket serves, and a
// SIGHUP — systemctl reload — is caught into hup rather than fatal), keeps
// its status and watchdog going, and reloads on SIGHUP, until ctx is done
// or the mode stops serving. Then it sends STOPPING=1 and shuts down in order within
// timeout: the mode drains its requests, then the forwarder stops, the
// writer commits what is queued and the database closes (b: nil for a
// worker, which has none).
func serve(ctx context.Context, logger *slog.Logger, m mode, b *backend, hup <-chan os.Signal, timeout time.Duration, stopping string) error {
	sd := systemd.New(logger)
	sd.Ready(m.status())
	stopNotify := sd.Start(m.status, m.progress)
	defer stopNotify()
wait:
	for {
		select {
		case <-hup:
			sd.Reloading()
			m.reload()
			sd.Ready(m.status())
		case err := <-m.stopped():
			if err != nil {
				return err
			}
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	stopNotify()
	sd.Stopping(stopping)

	logger.Info("shutting down", "timeout", timeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	drainErr := m.drain(sctx)
	var closeErr error
	if b != nil {
		closeErr = b.close()
		logger.Info("stopped", "events_stored", b.db.Stats().EventsStored)
	}
	if drainErr != nil {
		return fmt.Errorf("shutdown: %w", drainErr)
	}
	return closeErr
}

// systemdSocket returns the socket systemd passed (socket activation), or
// nil when it passed none; a passed socket wins over HOST and PORT.
func systemdSocket(logger *slog.Logger) (net.Listener, error) {
	lns, err := systemd.Listeners()
	if err != nil {
		return nil, err
	}
	switch len(lns) {
	case 0:
		return nil, nil
	case 1:
		logger.Info("using the socket systemd passed; HOST and PORT are not used", "addr", lns[0].Addr().String())
		return lns[0], nil
	}
	for _, ln := range lns {
		ln.Close()
	}
	return nil, fmt.Errorf("systemd passed %d sockets; give the .socket unit one ListenStream= (ListenStream=8080 takes IPv4 and IPv6 both)", len(lns))
}

// listen returns the socket systemd passed, or else a new one bound to
// HOST:PORT.
func listen(cfg *Config, logger *slog.Logger) (net.Listener, error) {
	ln, err := systemdSocket(logger)
	if err != nil || ln != nil {
		return ln, err
	}
	return net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
}

// loadCertificate reads TLS_CERT_FILE and TLS_KEY_FILE; nil without them.
// A certificate that cannot be read is a configuration error.
func loadCertificate(cfg *Config) (*Certificate, error) {
	if cfg.TLSCertFile == "" {
		return nil, nil
	}
	cert, err := LoadCertificate(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, &configError{[]string{err.Error()}}
	}
	return cert, nil
}

// serveHTTP serves srv on ln (with TLS when cert is set) and, when ops is
// true, the listeners of their own that METRICS_ADDR (/healthz and
// /metrics) and ADMIN_ADDR (adm's routes) name. Serve errors arrive on the returned channel.
func serveHTTP(cfg *Config, srv *ingest.Server, adm *adminSide, ln net.Listener, cert *Certificate, ops bool, logger *slog.Logger) (net.Listener, <-chan error, error) {
	served := make(chan error, 3)
	if ops {
		if err := adm.serve(cert, served, logger); err != nil {
			return nil, nil, err
		}
	}
	if ops && cfg.Ops == ingest.OpsSeparate {
		opsLn, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen for /metrics: %w", err)
		}
		go func() { served <- srv.ServeOps(opsLn) }()
		logger.Info("serving /healthz and /metrics", "addr", opsLn.Addr().String())
	}
	if cert != nil {
		ln = cert.Listener(ln)
	}
	go func() { served <- srv.Serve(ln) }()
	return ln, served, nil
}

// reloadSettings reads the settings again; on an error it logs and keeps
// the old ones (ok false).
func reloadSettings(args []string, logger *slog.Logger) (*Config, bool) {
	cfg, err := LoadConfig(args, lookupEnv, io.Discard)
	if err != nil {
		logger.Error("reload failed; keeping the old settings", "err", err)
		return nil, false
	}
	return cfg, true
}

// reloadCertificate reads the certificate's files again (a renewal); a bad
// one keeps the certificate in use.
func reloadCertificate(cert *Certificate, logger *slog.Logger) {
	if err := cert.Reload(); err != nil {
		logger.Error("certificate reload failed; keeping the old certificate", "err", err)
	} else if cert != nil {
		logCertificate(logger, "certificate reloaded", cert)
	}
}

func logCertificate(logger *slog.Logger, msg string, cert *Certificate) {
	leaf := cert.Leaf()
	logger.Info(msg, "subject", leaf.Subject.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
}
