package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
	"github.com/gocolytics/gocolytics/shard/forward/pgtest"
)

// TestLoadConfig_StatsSource: STATS_SOURCE is sqlite or postgres, and
// postgres needs POSTGRES_URL.
func TestLoadConfig_StatsSource(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want string // "" for accepted
	}{
		{map[string]string{}, ""},
		{map[string]string{"STATS_SOURCE": "SQLite"}, ""},
		{map[string]string{"STATS_SOURCE": "postgres", "POSTGRES_URL": "postgres://u@127.0.0.1/db"}, ""},
		{map[string]string{"STATS_SOURCE": "postgres"}, "STATS_SOURCE: postgres needs POSTGRES_URL"},
		{map[string]string{"STATS_SOURCE": "mysql"}, `STATS_SOURCE: "mysql" is not sqlite or postgres`},
	} {
		cfg, err := LoadConfig([]string{"--env-file", gctest.EnvFile(t, "")}, mapEnv(c.env), io.Discard)
		var ce *configError
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.env, err)
		case c.want == "" && cfg.StatsSource != strings.ToLower(c.env["STATS_SOURCE"]) && c.env["STATS_SOURCE"] != "":
			t.Errorf("%v: StatsSource %q", c.env, cfg.StatsSource)
		case c.want == "" && c.env["STATS_SOURCE"] == "" && cfg.StatsSource != StatsSQLite:
			t.Errorf("default StatsSource %q, want %q", cfg.StatsSource, StatsSQLite)
		case c.want != "" && (!errors.As(err, &ce) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: got %v, want a configError saying %q", c.env, err, c.want)
		}
	}
}

// TestStatsSource_Postgres: node b takes events and forwards them; node a,
// which took none, reads PostgreSQL (STATS_SOURCE=postgres) and answers
// the stats API, the recent events, the applications and exports exactly
// as b answers them from its own SQLite file: one dashboard shows every
// node.
func TestStatsSource_Postgres(t *testing.T) {
	t.Parallel()
	srv := pgtest.Shared(t)
	url := srv.CreateDB(t, "stats_source")
	c := srv.Conn(t, "stats_source")
	admin := []string{"--admin-keys", `["admin-key-0123456789"]`}
	b := startNode(t, filepath.Join(t.TempDir(), "b.db"), url, "b", admin...)
	a := startNode(t, filepath.Join(t.TempDir(), "a.db"), url, "a", append(admin, "--stats-source", "postgres")...)

	client := &http.Client{Timeout: 30 * time.Second}
	n := 0
	for batch := range 20 {
		markers := make([]string, 50)
		for i := range markers {
			markers[i] = fmt.Sprintf("ss-%d-%d", batch, i)
		}
		if code, body := gctest.Post(t, client, b.URL("/v1.0/events"), gctest.MarkedBatch(markers...)); code != 204 {
			t.Fatalf("POST a batch: %d %s", code, body)
		}
		n += len(markers)
	}
	gctest.WaitFor(t, func() bool {
		var got int
		err := c.QueryRow(context.Background(), "SELECT count(*) FROM event WHERE node_id = 'b'").Scan(&got)
		return err == nil && got == n
	}, fmt.Sprintf("%d rows of node b in PostgreSQL", n))

	get := func(p *gctest.Server, path string) string {
		req, _ := http.NewRequest("GET", p.URL(path), nil)
		req.Header.Set("Authorization", "Bearer admin-key-0123456789")
		code, body := gctest.Do(t, client, req)
		if code != 200 {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		return body
	}
	// Each answer must hold what shows the events are there.
	for _, q := range []struct{ path, holds string }{
		{"/v1.0/stats?application=My+Game&series=event_type,version,platform", `"events":1000,`},
		{"/v1.0/stats?application=My+Game&platform=Linux", `"events":`},
		{"/v1.0/stats/funnel?application=My+Game&steps=startup,level_start,level_complete", `{"step":"startup","users":`},
		{"/v1.0/stats/series?application=My+Game&by=version", `"name":"1.0.3"`},
		{"/v1.0/stats/recent?application=My+Game&limit=30", `"value":{"m":"ss-19-49"}`},
		{"/v1.0/stats/applications", `{"application":"My Game",`},
		{"/v1.0/export", `"value":{"m":"ss-0-0"}`},
		{"/v1.0/export?format=csv&event_type=startup&limit=20&after_id=100", `"My Game"`},
	} {
		want, got := get(b, q.path), get(a, q.path)
		if got != want {
			t.Errorf("%s from postgres differs from sqlite's:\npostgres: %.600s\nsqlite:   %.600s", q.path, got, want)
		}
		if !strings.Contains(want, q.holds) || strings.Contains(want, `"events":0,"dau"`) {
			t.Errorf("%s: %.300s does not hold %s", q.path, want, q.holds)
		}
	}
	// gocolytics export reads where STATS_SOURCE says too.
	export := func(dbPath string, env ...string) string {
		cmd := exec.Command(gctest.Binary(t), "export", "--env-file", gctest.EnvFile(t, ""), "--sqlite-file-path", dbPath, "--format", "csv", "--event-type", "purchase")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gocolytics export %v: %v", env, err)
		}
		return string(out)
	}
	want := export(b.DBPath)
	if got := export(a.DBPath, "STATS_SOURCE=postgres", "POSTGRES_URL="+url); got != want || !strings.Contains(want, `"purchase"`) {
		t.Errorf("gocolytics export from postgres differs from sqlite's:\npostgres: %.600s\nsqlite:   %.600s", got, want)
	}
}

// TestWorkers_ForwardMetrics: with two workers the forwarder runs in the
// supervisor, and every worker's /metrics shows it like the other
// process-wide figures (rows forwarded, lag, errors, connected), and every
// worker's /healthz says how forwarding goes, ok or behind.
func TestWorkers_ForwardMetrics(t *testing.T) {
	t.Parallel()
	srv := pgtest.Shared(t)
	url := srv.CreateDB(t, "workers_metrics")
	p := startNode(t, filepath.Join(t.TempDir(), "events.db"), url, "w", "--workers", "2")
	const n = 40
	l := gctest.Load{Addr: p.Addr, Clients: 4, Requests: n / 4, NewConns: true}.Start()
	l.Wait()
	if got := l.Count(204); got != n {
		t.Fatalf("got %d × 204 (statuses %v), want %d", got, l.Statuses(), n)
	}
	gctest.WaitFor(t, func() bool { return gctest.Metric(p.Addr, "gocolytics_forward_rows_total") == n }, "forwarded rows on /metrics")
	// Each scrape is a new connection, so both workers answer some.
	for i := range 10 {
		got := gctest.Metrics(t, p.Addr)
		for name, want := range map[string]float64{"gocolytics_forward_rows_total": n, "gocolytics_forward_lag_events": 0,
			"gocolytics_forward_errors_total": 0, "gocolytics_forward_connected": 1, "gocolytics_forward_position": n} {
			if v, ok := got[name]; !ok || v != want {
				t.Errorf("scrape %d: %s = %v (present %v), want %v", i, name, v, ok, want)
			}
		}
	}
	// Every worker's /healthz asks the supervisor how forwarding goes.
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	health := func(p *gctest.Server) (int, string) {
		req, _ := http.NewRequest("GET", p.URL("/healthz"), nil)
		return gctest.Do(t, fresh, req)
	}
	for range 6 {
		if code, body := health(p); code != 200 || !strings.Contains(body, `"forwarding":"ok"`) {
			t.Errorf("/healthz: %d %s, want 200 with forwarding ok", code, body)
		}
	}
	down := startNode(t, filepath.Join(t.TempDir(), "down.db"), fmt.Sprintf("postgres://postgres@127.0.0.1:%d/x?connect_timeout=1", gctest.FreePort(t)), "down",
		"--workers", "2", "--stats-source", "postgres", "--admin-keys", `["admin-key-0123456789"]`)
	gctest.WaitFor(t, func() bool {
		_, body := health(down)
		return strings.Contains(body, "forwarding to postgresql is behind")
	}, "a worker's /healthz saying forwarding is behind")
	for range 6 {
		if code, body := health(down); code != 200 || !strings.Contains(body, "forwarding to postgresql is behind") {
			t.Errorf("/healthz with postgresql unreachable: %d %s, want 200 saying forwarding is behind", code, body)
		}
	}
	// Ingest goes on; the stats read from PostgreSQL answer 503.
	if code, body := gctest.Post(t, fresh, down.URL("/v1.0/event"), gctest.NewEvent("down-1").JSON()); code != 204 {
		t.Errorf("POST with postgresql unreachable: %d %s", code, body)
	}
	req, _ := http.NewRequest("GET", down.URL("/v1.0/stats?application=My+Game"), nil)
	req.Header.Set("Authorization", "Bearer admin-key-0123456789")
	if code, body := gctest.Do(t, fresh, req); code != 503 || !strings.Contains(body, "The database cannot be reached") {
		t.Errorf("stats with postgresql unreachable: %d %s, want 503 saying the database cannot be reached", code, body)
	}
}
