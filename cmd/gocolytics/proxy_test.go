package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
)

// startNginx runs Debian's nginx with deploy/nginx.conf in front of the
// gocolytics at upstream, on 127.0.0.1 only: the recipe's listen lines become
// httpPort (plain) and httpsPort (TLS with certFile/keyFile), everything else
// is the recipe as shipped. nginx is killed by PID when the test ends.
func startNginx(t *testing.T, upstream string, httpPort, httpsPort int, certFile, keyFile string) {
	t.Helper()
	startNginxRecipe(t, "../../deploy/nginx.conf", []string{upstream}, httpPort, httpsPort, certFile, keyFile)
}

// startNginxRecipe is startNginx for any nginx recipe of deploy/: its
// upstream's server lines (127.0.0.1:80NN), in order, become upstreams.
func startNginxRecipe(t *testing.T, recipePath string, upstreams []string, httpPort, httpsPort int, certFile, keyFile string) {
	t.Helper()
	nginx := gctest.NeedProgram(t, "nginx", "nginx")
	recipe, err := os.ReadFile(recipePath)
	if err != nil {
		t.Fatal(err)
	}
	servers := regexp.MustCompile(`server 127\.0\.0\.1:80\d\d`)
	if n := len(servers.FindAllString(string(recipe), -1)); n != len(upstreams) {
		t.Fatalf("%s has %d upstream servers, want %d", recipePath, n, len(upstreams))
	}
	next := 0
	site := servers.ReplaceAllStringFunc(string(recipe), func(string) string { next++; return "server " + upstreams[next-1] })
	for _, r := range []struct{ old, new string }{
		{"/etc/letsencrypt/live/analytics.example.com/fullchain.pem", certFile},
		{"/etc/letsencrypt/live/analytics.example.com/privkey.pem", keyFile},
	} {
		if !strings.Contains(site, r.old) {
			t.Fatalf("%s has no %q", recipePath, r.old)
		}
		site = strings.ReplaceAll(site, r.old, r.new)
	}
	listen := regexp.MustCompile(`(?m)^\s*listen .*;\n`)
	if n := len(listen.FindAllString(site, -1)); n != 4 {
		t.Fatalf("%s has %d listen lines, want 4 (80 and 443, IPv4 and IPv6)", recipePath, n)
	}
	first := true
	site = listen.ReplaceAllStringFunc(site, func(string) string {
		if !first {
			return ""
		}
		first = false
		return fmt.Sprintf("    listen 127.0.0.1:%d;\n    listen 127.0.0.1:%d ssl;\n", httpPort, httpsPort)
	})

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "site.conf"), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/site.conf;
}
`, dir)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	waitProxy(t, "nginx", cmd, filepath.Join(dir, "error.log"), httpPort)
}

// waitProxy waits until the proxy cmd accepts connections on port, and
// kills it by PID when the test ends, showing logFile if the test failed.
func waitProxy(t *testing.T, name string, cmd *exec.Cmd, logFile string, port int) {
	t.Helper()
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("%s log:\n%s", name, b)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before accepting connections", name)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not accept connections on %d after 10s", name, port)
		}
	}
}

// needLoopbackClients skips the test where 127.0.0.2 and 127.0.0.3 cannot
// be used: they stand for two players, apart from the proxy's 127.0.0.1
// (Linux routes all of 127.0.0.0/8 to lo).
func needLoopbackClients(t *testing.T) {
	t.Helper()
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Skipf("cannot use the loopback address %s here: %v", ip, err)
		}
		ln.Close()
	}
}

// clientFrom is an HTTP client whose connections come from the loopback
// address ip, so that nginx sees distinct clients. It follows no redirect
// and trusts root for HTTPS.
func clientFrom(ip string, root *x509.Certificate) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	return &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			DialContext:       d.DialContext,
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// proxyEvent is an event of the player userID (a marker of its own).
func proxyEvent(userID string) gctest.Event {
	return gctest.NewEvent(userID + "-" + strconv.Itoa(int(proxyEvents.Add(1)))).WithKey(runTestKey)
}

var proxyEvents atomic.Int64

// send posts body to url with an X-Forwarded-For of the client's own
// making (empty: none) and returns the status.
func send(t *testing.T, c *http.Client, url, forwardedFor, body string) int {
	t.Helper()
	var header []string
	if forwardedFor != "" {
		header = []string{"X-Forwarded-For", forwardedFor}
	}
	code, _ := gctest.Post(t, c, url, body, header...)
	return code
}

// TestNginxRecipe runs deploy/nginx.conf in front of the server, with the
// TRUSTED_PROXIES the recipe names: requests through nginx are stored, each
// client spends its own rate-limit budget (the address nginx saw, whatever
// X-Forwarded-For the client sent), the ingest paths are never redirected,
// and a batch over nginx's default body limit passes.
func TestNginxRecipe(t *testing.T) {
	needLoopbackClients(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	root := writeCertificate(t, "nginx", certFile, keyFile)

	s := startRun(t, recipeArgs(t, "../../deploy/nginx.conf")...)
	httpPort, httpsPort := gctest.FreePort(t), gctest.FreePort(t)
	startNginx(t, s.Addr, httpPort, httpsPort, certFile, keyFile)

	checkProxy(t, s, fmt.Sprintf("http://127.0.0.1:%d", httpPort), fmt.Sprintf("https://127.0.0.1:%d", httpsPort), root)
}

// checkProxy sends requests through a proxy in front of s (which runs with
// RATE_LIMIT 3/minute) and checks what arrived: two clients, from
// 127.0.0.2 and 127.0.0.3, each with its own budget whatever
// X-Forwarded-For they write themselves; ingest paths with a trailing or a
// double slash served, never redirected; a 2 MB batch over HTTPS.
func checkProxy(t *testing.T, s *runningServer, base, tlsBase string, root *x509.Certificate) {
	t.Helper()
	alice, bob := clientFrom("127.0.0.2", root), clientFrom("127.0.0.3", root)
	for i, c := range []struct {
		client         *http.Client
		url, xff, body string
		want           int
		what           string
	}{
		{alice, base + "/v1.0/event", "203.0.113.1", proxyEvent("alice").JSON(), 204, "alice's first request"},
		{alice, base + "/v1.0/events/", "203.0.113.2", gctest.Batch(proxyEvent("alice")), 204, "a trailing slash (no redirect)"},
		{alice, base + "//v1.0/events", "", gctest.Batch(proxyEvent("alice")), 204, "a double slash (no redirect)"},
		{alice, base + "/v1.0/event", "203.0.113.4", proxyEvent("alice").JSON(), 429, "alice's fourth request, over 3/minute whatever X-Forwarded-For says"},
		{bob, base + "/v1.0/event", "203.0.113.1", proxyEvent("bob").JSON(), 204, "bob, with his own budget"},
		{bob, tlsBase + "/v1.0/events", "", bigBatch(6000, "bob"), 204, "6000 events (2 MB) over HTTPS"},
	} {
		if got := send(t, c.client, c.url, c.xff, c.body); got != c.want {
			t.Fatalf("request %d, %s: status %d, want %d", i, c.what, got, c.want)
		}
	}
	if n := gctest.CountRows(t, s.DBPath); n != 3+1+6000 {
		t.Errorf("rows = %d, want %d", n, 3+1+6000)
	}
	// The metrics are on METRICS_ADDR only: no spelling of /metrics
	// reaches them through the proxy.
	for _, path := range []string{"/metrics", "/metrics/", "/metrics%2F", "/metrics/.", "/metrics/./", "//metrics", "/healthz"} {
		code, body := get(t, alice, base+path)
		if code != 404 || strings.Contains(body, "gocolytics_") {
			t.Errorf("GET %s through the proxy: got %d %.80q, want 404", path, code, body)
		}
	}
}

// recipeArgs are the settings a recipe's header comment gives gocolytics
// (NAME="value" lines), as flags, with METRICS_ADDR on a free port and a
// rate limit of 3/minute.
func recipeArgs(t *testing.T, recipe string) []string {
	t.Helper()
	b, err := os.ReadFile(recipe)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--rate-limit", "3/minute"}
	for _, m := range regexp.MustCompile(`(?m)^#\s+([A-Z_]+)="([^"]*)"`).FindAllStringSubmatch(string(b), -1) {
		switch m[1] {
		case "HOST", "PORT":
			continue
		case "METRICS_ADDR":
			m[2] = fmt.Sprintf("127.0.0.1:%d", gctest.FreePort(t))
		}
		args = append(args, "--"+flagName(m[1]), m[2])
	}
	if !slices.Contains(args, "--metrics-addr") || !slices.Contains(args, "--trusted-proxies") {
		t.Fatalf("%s names no METRICS_ADDR or TRUSTED_PROXIES setting: %q", recipe, args)
	}
	return args
}

// get fetches url with c and returns the status and the body.
func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return gctest.Do(t, c, req)
}

// bigBatch is n events of some 350 bytes each.
func bigBatch(n int, userID string) string {
	events := make([]gctest.Event, n)
	for i := range events {
		events[i] = proxyEvent(userID)
		events[i].Value = `{"pad":"` + strings.Repeat("x", 200) + `"}`
	}
	return gctest.Batch(events...)
}

// TestCaddyRecipe runs deploy/Caddyfile in front of the server, on
// 127.0.0.1 ports instead of 80 and 443 and with the test's certificate
// instead of Let's Encrypt's; otherwise as shipped.
func TestCaddyRecipe(t *testing.T) {
	caddy := gctest.NeedProgram(t, "caddy", "caddy")
	needLoopbackClients(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	root := writeCertificate(t, "caddy", certFile, keyFile)

	s := startRun(t, recipeArgs(t, "../../deploy/Caddyfile")...)
	httpPort, httpsPort := gctest.FreePort(t), gctest.FreePort(t)

	recipe, err := os.ReadFile("../../deploy/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	site := string(recipe)
	for _, r := range []struct{ old, new string }{
		{"reverse_proxy 127.0.0.1:8000", "reverse_proxy " + s.Addr},
		{"\nhttp://analytics.example.com {", fmt.Sprintf("\nhttp://127.0.0.1:%d {", httpPort)},
		{"\nanalytics.example.com {", fmt.Sprintf("\nhttps://127.0.0.1:%d {\n\ttls %s %s", httpsPort, certFile, keyFile)},
	} {
		if !strings.Contains(site, r.old) {
			t.Fatalf("deploy/Caddyfile has no %q", r.old)
		}
		site = strings.ReplaceAll(site, r.old, r.new)
	}
	site = fmt.Sprintf("{\n\tadmin off\n\thttp_port %d\n\thttps_port %d\n\tstorage file_system %s\n}\n\n%s",
		httpPort, httpsPort, filepath.Join(dir, "storage"), site)
	confPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(confPath, []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "caddy.log")
	logw, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logw.Close() })
	cmd := exec.Command(caddy, "run", "--config", confPath, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
	cmd.Stdout, cmd.Stderr = logw, logw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start caddy: %v", err)
	}
	waitProxy(t, "caddy", cmd, logFile, httpPort)

	checkProxy(t, s, fmt.Sprintf("http://127.0.0.1:%d", httpPort), fmt.Sprintf("https://127.0.0.1:%d", httpsPort), root)
}
