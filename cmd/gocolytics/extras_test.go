package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
	"github.com/gocolytics/gocolytics/ingest"
)

func TestLoadConfig_ExtrasSettings(t *testing.T) {
	load := func(env map[string]string) (*Config, error) {
		return LoadConfig([]string{"--env-file", gctest.EnvFile(t, "")}, mapEnv(env), io.Discard)
	}
	c, err := load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.CORSOrigins, []string{"*"}) || !c.Docs || c.DocsAssetsURL != "" || c.Ops != ingest.OpsShared {
		t.Errorf("defaults: CORS %q, docs %v %q, ops %v", c.CORSOrigins, c.Docs, c.DocsAssetsURL, c.Ops)
	}
	c, err = load(map[string]string{"CORS_ORIGINS": " https://Game.example/ ,http://127.0.0.1:8060", "DOCS": "false",
		"DOCS_ASSETS_URL": "/static", "METRICS_ADDR": "127.0.0.1:9100"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.CORSOrigins, []string{"https://game.example", "http://127.0.0.1:8060"}) || c.Docs || c.DocsAssetsURL != "/static" ||
		c.Ops != ingest.OpsSeparate || c.MetricsAddr != "127.0.0.1:9100" {
		t.Errorf("set: CORS %q, docs %v %q, ops %v %q", c.CORSOrigins, c.Docs, c.DocsAssetsURL, c.Ops, c.MetricsAddr)
	}
	for _, off := range []string{"off", ""} {
		c, err = load(map[string]string{"CORS_ORIGINS": off, "METRICS_ADDR": "off"})
		if err != nil {
			t.Fatal(err)
		}
		if c.CORSOrigins == nil || len(c.CORSOrigins) != 0 || c.Ops != ingest.OpsOff {
			t.Errorf("CORS_ORIGINS=%q: %q (want empty, not nil); METRICS_ADDR=off: %v", off, c.CORSOrigins, c.Ops)
		}
	}
	_, err = load(map[string]string{"CORS_ORIGINS": "game.example", "METRICS_ADDR": "9100", "DOCS": "maybe"})
	for _, name := range []string{"CORS_ORIGINS", "METRICS_ADDR", "DOCS:"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("bad settings: error %v does not name %s", err, name)
		}
	}
}

// TestBinary_MetricsAddr runs the program with /healthz and /metrics on a
// listener of their own, and checks the commit hook feeds the metrics.
func TestBinary_MetricsAddr(t *testing.T) {
	t.Parallel()
	ops := fmt.Sprintf("127.0.0.1:%d", gctest.FreePort(t))
	p := gctest.Start(t, "", "--metrics-addr", ops, "--cors-origins", "https://game.example")
	if !strings.Contains(p.Log(), `msg="serving /healthz and /metrics" addr=`+ops) {
		t.Fatalf("no ops listener on %s in the log:\n%s", ops, p.Log())
	}
	req, _ := http.NewRequest("POST", p.URL("/v1.0/event"), strings.NewReader(gctest.NewEvent("m1").JSON()))
	req.Header.Set("Origin", "https://game.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://game.example" {
		t.Fatalf("post: %d, allow-origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	if status, _ := gctest.Get(t, p.URL("/metrics")); status != 404 {
		t.Errorf("/metrics on the main listener: %d, want 404", status)
	}
	if status, _ := gctest.Get(t, p.URL("/docs")); status != 200 {
		t.Errorf("/docs: %d, want 200", status)
	}
	if status, body := gctest.Get(t, "http://"+ops+"/healthz"); status != 200 {
		t.Errorf("/healthz: %d %s", status, body)
	}
	status, body := gctest.Get(t, "http://"+ops+"/metrics")
	for _, want := range []string{"\ngocolytics_events_stored_total 1\n", "\ngocolytics_commit_seconds_count 1\n"} {
		if status != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics: %d, lacks %q", status, want)
		}
	}
}

func TestBinary_DocsAndMetricsOff(t *testing.T) {
	t.Parallel()
	p := gctest.Start(t, "", "--metrics-addr", "off", "--docs", "false")
	for _, path := range []string{"/metrics", "/healthz", "/docs", "/openapi.json"} {
		if status, _ := gctest.Get(t, p.URL(path)); status != 404 {
			t.Errorf("%s: %d, want 404", path, status)
		}
	}
}
