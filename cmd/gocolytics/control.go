package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/gocolytics/gocolytics/ingest/admin"
)

// The control socket is how `gocolytics forget` reaches the writer of a
// server running on the same database: a Unix socket beside the database
// (its path + ".sock"), mode 0600, served by the process that owns the
// writer. Whoever may open it may open the database file anyway, so the
// file's permissions are its only check; it answers nothing but
// DELETE /v1.0/users/{user_id}, exactly as the admin endpoint does.
const controlSuffix = ".sock"

// errNoControl says no server answers on the control socket.
var errNoControl = errors.New("no server is running on the database")

// maxSocketPath is the longest path a Unix socket can have on Linux.
const maxSocketPath = 107

func controlPath(dbPath string) string { return dbPath + controlSuffix }

// serveControl serves the control socket until the returned function is
// called. A path too long for a socket, or a live server already on it,
// leaves it out (forget then opens the database itself, which SQLite's
// locking keeps safe).
func serveControl(dbPath string, eraser admin.Eraser, logger *slog.Logger) func() {
	path := controlPath(dbPath)
	if len(path) > maxSocketPath {
		logger.Warn("no control socket: the database path is too long for a Unix socket; gocolytics forget will write to the database itself", "path", path)
		return func() {}
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		logger.Warn("another server answers on the control socket; not serving one", "path", path)
		return func() {}
	}
	os.Remove(path) // left behind by a server that died
	ln, err := net.Listen("unix", path)
	if err != nil {
		logger.Warn("no control socket", "path", path, "err", err)
		return func() {}
	}
	os.Chmod(path, 0o600)
	r := router.New()
	r.DELETE(admin.UsersPath+"{user_id:*}", admin.New(admin.Config{Eraser: eraser, Logger: logger}, nil).EraseHandler())
	srv := &fasthttp.Server{Handler: r.Handler, Name: "gocolytics-control", ReadTimeout: 10 * time.Second, IdleTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return func() {
		srv.Shutdown()
		os.Remove(path)
	}
}

// controlErase asks the server on the control socket to erase; errNoControl
// when none answers.
func controlErase(dbPath, user, app string) (int64, error) {
	path := controlPath(dbPath)
	if _, err := os.Stat(path); err != nil {
		return 0, errNoControl
	}
	c := &fasthttp.Client{Dial: func(string) (net.Conn, error) { return net.DialTimeout("unix", path, 2*time.Second) }}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	u := "http://control" + admin.UsersPath + url.PathEscape(user)
	if app != "" {
		u += "?application=" + url.QueryEscape(app)
	}
	req.SetRequestURI(u)
	req.Header.SetMethod(fasthttp.MethodDelete)
	if err := c.Do(req, resp); err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return 0, errNoControl
		}
		return 0, fmt.Errorf("control socket %s: %w", path, err)
	}
	var body struct {
		Deleted *int64 `json:"deleted"`
		Detail  any    `json:"detail"`
	}
	if err := json.Unmarshal(resp.Body(), &body); err != nil || resp.StatusCode() != 200 || body.Deleted == nil {
		return 0, fmt.Errorf("the server refused the erasure (%d): %s", resp.StatusCode(), resp.Body())
	}
	return *body.Deleted, nil
}
