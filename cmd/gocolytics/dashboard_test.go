package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
	"github.com/gocolytics/gocolytics/ingest"
)

func TestLoadConfig_AdminAddr(t *testing.T) {
	for _, tc := range []struct {
		v    string
		mode ingest.OpsMode
		addr string
	}{{"", ingest.OpsShared, ""}, {"off", ingest.OpsOff, ""}, {" 127.0.0.1:8001 ", ingest.OpsSeparate, "127.0.0.1:8001"}} {
		c, err := LoadConfig([]string{"--env-file", gctest.EnvFile(t, "")}, mapEnv(map[string]string{"ADMIN_ADDR": tc.v}), io.Discard)
		if err != nil || c.Admin != tc.mode || c.AdminAddr != tc.addr {
			t.Errorf("ADMIN_ADDR=%q: %v, %v %q", tc.v, err, c.Admin, c.AdminAddr)
		}
	}
	_, err := LoadConfig([]string{"--env-file", gctest.EnvFile(t, "")}, mapEnv(map[string]string{"ADMIN_ADDR": "8001"}), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "ADMIN_ADDR") {
		t.Errorf("ADMIN_ADDR=8001: %v", err)
	}
}

// getWithKey fetches url with "Authorization: Bearer key" (none if empty).
func getWithKey(t *testing.T, url, key string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestBinary_Dashboard: on the main listener by default, the stats API
// answers the admin key only (not an ingest key, nor a wrong one), sees the
// events just posted, and the page carries its security headers; the key
// is in no line of the log, at its most detailed level.
func TestBinary_Dashboard(t *testing.T) {
	t.Parallel()
	s := gctest.Start(t, "", "--admin-keys", `["the-admin-key"]`, "--log-level", "debug")
	if code, body := gctest.Post(t, nil, s.URL("/v1.0/events"), gctest.MarkedBatch("a", "b", "c")); code != 204 {
		t.Fatalf("post: %d %s", code, body)
	}
	for _, key := range []string{"", gctest.Key, "the-admin-key2", "wrong"} {
		if code, _, body := getWithKey(t, s.URL("/v1.0/stats?application=x"), key); code != 401 || body != `{"detail":"Invalid or missing admin key"}` {
			t.Errorf("key %q: %d %s", key, code, body)
		}
	}
	// The stats read the event table, where events arrive with the merge
	// from the staging table, within about a second (shard/DESIGN.md).
	var code int
	var body string
	gctest.WaitFor(t, func() bool {
		code, _, body = getWithKey(t, s.URL("/v1.0/stats/applications"), "the-admin-key")
		return code != 200 || strings.Contains(body, `"events":3}`)
	}, "the stats to count the events")
	if code != 200 || !strings.Contains(body, `"events":3}`) {
		t.Errorf("applications: %d %s", code, body)
	}
	code, hdr, body := getWithKey(t, s.URL("/dashboard"), "")
	if code != 200 || !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'none'") || hdr.Get("Referrer-Policy") != "no-referrer" ||
		!strings.Contains(body, "Admin key needed") {
		t.Errorf("dashboard: %d %v", code, hdr)
	}
	if strings.Contains(s.Log(), "the-admin-key") {
		t.Errorf("the admin key is in the log:\n%s", s.Log())
	}
}

// TestBinary_AdminAddr: ADMIN_ADDR moves the dashboard, the stats API and
// the admin endpoints to a listener of their own (in one process and with
// workers), where the generated key's link points; off serves them
// nowhere.
func TestBinary_AdminAddr(t *testing.T) {
	t.Parallel()
	adminPaths := []string{"/dashboard", "/v1.0/stats/applications", "/v1.0/export"}
	for _, workers := range []string{"1", "2"} {
		t.Run("workers="+workers, func(t *testing.T) {
			port := gctest.FreePort(t)
			s := gctest.Start(t, "", "--admin-addr", fmt.Sprintf("127.0.0.1:%d", port), "--workers", workers)
			adminURL := fmt.Sprintf("http://127.0.0.1:%d", port)
			m := regexp.MustCompile(`url="?(http://[^#"\s]+/dashboard)#key=([^"\s]+)`).FindStringSubmatch(s.Log())
			if m == nil || m[1] != adminURL+"/dashboard" {
				t.Fatalf("no dashboard link to %s in the log:\n%s", adminURL, s.Log())
			}
			key := m[2]
			// A worker opens the admin listener once its link is up, a
			// moment after READY=1.
			gctest.WaitFor(t, func() bool {
				resp, err := http.Get(adminURL + "/dashboard")
				if err == nil {
					resp.Body.Close()
				}
				return err == nil
			}, "the admin listener")
			for _, p := range adminPaths {
				if code, _, _ := getWithKey(t, s.URL(p), key); code != 404 {
					t.Errorf("main listener %s: %d, want 404", p, code)
				}
				if code, _, body := getWithKey(t, adminURL+p, key); code != 200 {
					t.Errorf("admin listener %s: %d %s", p, code, body)
				}
				if code, _, _ := getWithKey(t, adminURL+p+"?application=x", gctest.Key); p != "/dashboard" && code != 401 {
					t.Errorf("admin listener %s with the ingest key: %d", p, code)
				}
			}
			if code, body := gctest.Post(t, nil, adminURL+"/v1.0/event", gctest.NewEvent("x").JSON()); code != 404 && code != 405 {
				t.Errorf("ingest on the admin listener: %d %s", code, body)
			}
			if code, body := gctest.Post(t, nil, s.URL("/v1.0/event"), gctest.NewEvent("x").JSON()); code != 204 {
				t.Errorf("ingest on the main listener: %d %s", code, body)
			}
		})
	}
	t.Run("off", func(t *testing.T) {
		s := gctest.Start(t, "", "--admin-addr", "off", "--admin-keys", `["k"]`)
		for _, p := range adminPaths {
			if code, _, _ := getWithKey(t, s.URL(p), "k"); code != 404 {
				t.Errorf("%s: %d, want 404", p, code)
			}
		}
	})
}

// TestRun_HTTPSAdminAddr: with TLS_CERT_FILE, the listener of ADMIN_ADDR
// serves HTTPS too (plain HTTP is refused there), and the logged dashboard
// link says https.
func TestRun_HTTPSAdminAddr(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cert := writeCertificate(t, "admin", certFile, keyFile)
	adminAddr := fmt.Sprintf("127.0.0.1:%d", gctest.FreePort(t))
	// run raises this process's GOMAXPROCS (procs.go); TestServe_WriterProcs
	// compares the binary's with this process's default.
	procs := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(procs) })
	s := startRun(t, "--tls-cert-file", certFile, "--tls-key-file", keyFile, "--admin-addr", adminAddr)
	line := s.log.wait(t, "#key=", nil)
	m := regexp.MustCompile(`url="?(https://[^#"\s]+/dashboard)#key=([^"\s]+)`).FindStringSubmatch(line)
	if m == nil || m[1] != "https://"+adminAddr+"/dashboard" {
		t.Fatalf("dashboard link %q, want https://%s/dashboard#key=...", line, adminAddr)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	gctest.WaitFor(t, func() bool {
		resp, err := client.Get(m[1])
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}, "the admin listener")
	req, _ := http.NewRequest(http.MethodGet, "https://"+adminAddr+"/v1.0/stats/applications", nil)
	req.Header.Set("Authorization", "Bearer "+m[2])
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || string(body) != "[]" {
		t.Errorf("applications over HTTPS: %d %s, TLS %v", resp.StatusCode, body, resp.TLS != nil)
	}
	if resp, err := http.Get("http://" + adminAddr + "/dashboard"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP on the admin listener served the page")
		}
	}
}
