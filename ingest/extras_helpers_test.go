package ingest_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/shard"
)

// plainClient sends requests as written: no transparent gzip, no
// redirects followed.
var plainClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{DisableCompression: true},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// call sends one request with the given headers and returns the response
// (body already read and closed) and its body.
func call(tb testing.TB, method, url string, hdr map[string]string, body []byte) (*http.Response, string) {
	tb.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := plainClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, string(b)
}

// gzipped compresses b.
func gzipped(tb testing.TB, b []byte) []byte {
	tb.Helper()
	var out bytes.Buffer
	w, _ := gzip.NewWriterLevel(&out, gzip.BestCompression)
	if _, err := w.Write(b); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}

// startWired starts a real server as the program does: the database's
// commit hook feeds the server's metrics (cfg.Metrics, or new ones). It returns the server and, when
// cfg.Ops is OpsSeparate, the URL of the /healthz and /metrics listener.
func startWired(tb testing.TB, cfg ingest.Config, opts shard.Options) (*testServer, string) {
	tb.Helper()
	if cfg.Keys == nil {
		cfg.Keys = []string{testKey}
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	path := filepath.Join(tb.TempDir(), "events.db")
	db := shard.New(path, opts, logger)
	if cfg.Metrics == nil {
		cfg.Metrics = ingest.NewMetrics()
	}
	db.OnCommit = cfg.Metrics.ObserveCommit
	if err := db.Open(); err != nil {
		tb.Fatalf("open database: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := ingest.New(cfg, db, logger)
	done := make(chan error, 2)
	go func() { done <- srv.Serve(ln) }()
	served := 1
	var opsURL string
	if cfg.Ops == ingest.OpsSeparate {
		opsLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		opsURL = "http://" + opsLn.Addr().String()
		go func() { done <- srv.ServeOps(opsLn) }()
		served++
	}
	tb.Cleanup(func() {
		// fasthttp counts a connection that has sent no request yet as
		// idle only 5 s after it was accepted (as net/http does), and
		// Go's client sometimes dials one it then leaves unused: Shutdown
		// may wait for it 5-6 s. The server's own SHUTDOWN_TIMEOUT is 10 s.
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
		for range served {
			<-done
		}
		if err := db.Close(); err != nil && !errors.Is(err, shard.ErrClosed) {
			tb.Errorf("close database: %v", err)
		}
	})
	addr := ln.Addr().String()
	return &testServer{URL: "http://" + addr, Addr: addr, DBPath: path, DB: db, Srv: srv}, opsURL
}
