package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
	_ "github.com/mattn/go-sqlite3"
)

const runTestKey = "run-test-key"

// runningServer is run() started in-process; its log is watched line by line.
type runningServer struct {
	Addr   string
	DBPath string
	log    *logWatch
}

// startRun starts run() with args plus a temporary database, 127.0.0.1 at
// a free port, one API key and no rate limit, waits for its READY=1 (on a
// NOTIFY_SOCKET of the test's, as systemd would), and stops it when the
// test ends, checking that it returned nil.
func startRun(t *testing.T, args ...string) *runningServer {
	t.Helper()
	dbPath := filepath.Join(t.TempDir(), "events.db")
	port := gctest.FreePort(t)
	args = append([]string{
		"--host", "127.0.0.1", "--port", strconv.Itoa(port), "--sqlite-file-path", dbPath,
		"--api-keys", `["` + runTestKey + `"]`, "--rate-limit", "off",
		"--env-file", gctest.EnvFile(t, ""),
	}, args...)
	sock := gctest.NewNotifySocket(t)
	t.Setenv("NOTIFY_SOCKET", sock.Path)
	lw := newLogWatch()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	returned := make(chan struct{})
	go func() { done <- run(ctx, args, io.Discard, lw); close(returned) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run returned %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("run did not return within 15s of its context's end")
		}
	})
	if _, err := sock.WaitReady(returned, 20*time.Second); err != nil {
		t.Fatalf("run: %v; its log:\n%s", err, lw)
	}
	return &runningServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), DBPath: dbPath, log: lw}
}

// logWatch is an io.Writer for run's log that hands complete lines to
// whoever waits for one.
type logWatch struct {
	mu    sync.Mutex
	buf   []byte
	lines []string
	all   strings.Builder
	more  chan struct{}
}

// String is the whole log so far.
func (w *logWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

func newLogWatch() *logWatch { return &logWatch{more: make(chan struct{})} }

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			break
		}
		w.lines = append(w.lines, string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	close(w.more)
	w.more = make(chan struct{})
	return len(p), nil
}

// wait returns the first line containing substr that an earlier wait has
// not returned, waiting for it up to 10s; it fails the test if run ends
// first (done may be nil).
func (w *logWatch) wait(t *testing.T, substr string, done <-chan error) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		w.mu.Lock()
		for i, l := range w.lines {
			if strings.Contains(l, substr) {
				w.lines = append(w.lines[:i:i], w.lines[i+1:]...)
				w.mu.Unlock()
				return l
			}
		}
		more := w.more
		w.mu.Unlock()
		select {
		case <-more:
		case err := <-done:
			t.Fatalf("run returned %v before logging %q", err, substr)
		case <-deadline:
			t.Fatalf("no log line with %q within 10s", substr)
		}
	}
}

// writeCertificate writes a fresh self-signed certificate for 127.0.0.1
// named cn, and its key, to certFile and keyFile.
func writeCertificate(t *testing.T, cn, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Written in place, as certbot's renewal does through its symlinks.
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// postTLS posts one event over a new HTTPS connection that trusts only
// trusted, and returns the status and the certificate the server showed.
func postTLS(t *testing.T, addr string, trusted *x509.Certificate) (int, *x509.Certificate) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(trusted)
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	e := gctest.NewEvent("tls").WithKey(runTestKey)
	e.Value = ""
	resp, err := client.Post("https://"+addr+"/v1.0/event", "", strings.NewReader(e.JSON()))
	if err != nil {
		t.Fatalf("POST over HTTPS: %v", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.TLS.PeerCertificates[0]
}

func TestRun_HTTPS(t *testing.T) {
	// run() reloads on SIGHUP; catching it here too keeps the default action
	// (ending the test binary) away even before run() has subscribed.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	t.Cleanup(func() { signal.Stop(hup) })

	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCertificate(t, "first", certFile, keyFile)
	s := startRun(t, "--tls-cert-file", certFile, "--tls-key-file", keyFile)
	s.log.wait(t, "CN=first", nil)

	status, got := postTLS(t, s.Addr, first)
	if status != http.StatusNoContent || got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("first POST: status %d, certificate %v; want 204 with the first certificate", status, got.Subject)
	}

	// Plain HTTP on the HTTPS port is refused, never redirected.
	client := &http.Client{
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if resp, err := client.Post("http://"+s.Addr+"/v1.0/events", "", strings.NewReader("[]")); err == nil {
		resp.Body.Close()
		if resp.StatusCode/100 == 3 || resp.StatusCode == http.StatusNoContent {
			t.Errorf("plain HTTP on the HTTPS port: status %d, want a failure and no redirect", resp.StatusCode)
		}
	}

	// A renewal: new files, SIGHUP, new connections get the new certificate.
	second := writeCertificate(t, "second", certFile, keyFile)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if l := s.log.wait(t, "certificate reloaded", nil); !strings.Contains(l, "CN=second") {
		t.Fatalf("reload logged %q, want the second certificate", l)
	}
	status, got = postTLS(t, s.Addr, second)
	if status != http.StatusNoContent || got.SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Fatalf("after SIGHUP: status %d, certificate %v; want 204 with the second certificate", status, got.Subject)
	}

	// A broken file on reload keeps the certificate in use.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.log.wait(t, "certificate reload failed", nil)
	status, got = postTLS(t, s.Addr, second)
	if status != http.StatusNoContent || got.SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Fatalf("after a failed reload: status %d, certificate %v; want 204 with the second certificate", status, got.Subject)
	}

	if n := gctest.CountRows(t, s.DBPath); n != 3 {
		t.Errorf("rows = %d, want 3", n)
	}
}

func TestRun_TLSSettings(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCertificate(t, "x", certFile, keyFile)
	missing := filepath.Join(dir, "missing.pem")
	db := filepath.Join(dir, "db", "events.db")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"cert without key", []string{"--tls-cert-file", certFile}, "set both for HTTPS, or neither"},
		{"key without cert", []string{"--tls-key-file", keyFile}, "set both for HTTPS, or neither"},
		{"missing key file", []string{"--tls-cert-file", certFile, "--tls-key-file", missing}, "load TLS certificate"},
		{"key as certificate", []string{"--tls-cert-file", keyFile, "--tls-key-file", keyFile}, "load TLS certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--port", "0", "--sqlite-file-path", db, "--env-file", gctest.EnvFile(t, "")}, tc.args...)
			err := run(context.Background(), args, io.Discard, io.Discard)
			var ce *configError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run: %v; want a configError containing %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Dir(db)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the database folder was created before the settings were checked")
			}
		})
	}
}
