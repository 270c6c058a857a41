package admin

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/valyala/fasthttp"
)

// ServerConfig sets the listener of its own that ADMIN_ADDR gives the
// admin endpoints and the dashboard.
type ServerConfig struct {
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	Logger       *slog.Logger
}

// MaxRequestBodySize bounds an admin request's body: none of them has one.
const MaxRequestBodySize = 4096

// NewServer returns the HTTP server of the admin listener, answering with
// handler, with the main server's timeouts.
func NewServer(handler fasthttp.RequestHandler, cfg ServerConfig) *fasthttp.Server {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &fasthttp.Server{
		Handler:               handler,
		Name:                  "gocolytics",
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		Concurrency:           256,
		MaxRequestBodySize:    MaxRequestBodySize,
		NoDefaultContentType:  true,
		SecureErrorLogMessage: true,
		CloseOnShutdown:       true,
		Logger:                serverLogger{logger.With("component", "admin")},
	}
}

type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Printf(format string, args ...any) {
	s.l.Debug("http", "msg", fmt.Sprintf(format, args...))
}
