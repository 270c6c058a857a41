package admin_test

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/ingest/admin"
	"github.com/gocolytics/gocolytics/ingest/ratelimit"
	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/query"
)

const (
	ingestKey = "ingest-key"
	adminKey  = "admin-key-1"
)

type server struct {
	url    string
	dbPath string
	db     *shard.DB
}

// start runs the real ingest server with the admin endpoints on
// 127.0.0.1:0, on a new database, wired as the program wires it.
func start(tb testing.TB, rates []ratelimit.Rate) *server {
	tb.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	path := filepath.Join(tb.TempDir(), "events.db")
	db := shard.New(path, shard.Options{}, logger)
	if err := db.Open(); err != nil {
		tb.Fatal(err)
	}
	cfg := ingest.Config{Keys: []string{ingestKey}, Rates: rates, TrustedProxies: nil}
	srv := ingest.New(cfg, db, logger)
	reader, err := query.Open(path, query.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	g := admin.NewGuard([]string{adminKey}, ingest.NewRequestLimiter(cfg, logger))
	admin.New(admin.Config{Source: reader, Eraser: db, Logger: logger}, g).Register(srv.Router())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go srv.Serve(ln)
	tb.Cleanup(func() {
		srv.Shutdown(tb.Context())
		reader.Close()
		db.Close()
	})
	return &server{url: "http://" + ln.Addr().String(), dbPath: path, db: db}
}

func (s *server) do(tb testing.TB, method, path, key string, hdr ...string) (*http.Response, string) {
	tb.Helper()
	req, _ := http.NewRequest(method, s.url+path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			tb.Fatal(err)
		}
		r = zr
	}
	b, err := io.ReadAll(r)
	if err != nil {
		tb.Fatal(err)
	}
	return resp, string(b)
}

func (s *server) ingest(tb testing.TB, body string) {
	tb.Helper()
	resp, err := http.Post(s.url+"/v1.0/events", "application/json", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		tb.Fatalf("ingest: %d", resp.StatusCode)
	}
}

func TestGuard_Keys(t *testing.T) {
	s := start(t, nil)
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"none", "", 401},
		{"ingest key", "Bearer " + ingestKey, 401},
		{"wrong key", "Bearer admin-key-2", 401},
		{"prefix of the key", "Bearer admin-key-", 401},
		{"other scheme", "Basic " + adminKey, 401},
		{"admin key", "Bearer " + adminKey, 200},
		{"scheme in lower case", "bearer " + adminKey, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := s.do(t, "GET", "/v1.0/export", "", "Authorization", tc.auth)
			if resp.StatusCode != tc.want {
				t.Fatalf("status: got %d, want %d (%s)", resp.StatusCode, tc.want, body)
			}
			if tc.want == 401 && body != admin.UnauthorizedBody {
				t.Errorf("body: got %s, want %s", body, admin.UnauthorizedBody)
			}
		})
	}
}

func TestGuard_RateLimit(t *testing.T) {
	s := start(t, []ratelimit.Rate{{Count: 3, Multiplier: 1, Unit: "minute"}})
	codes := ""
	for range 4 {
		resp, _ := s.do(t, "GET", "/v1.0/export?limit=1", adminKey)
		codes += resp.Status[:3] + " "
	}
	if codes != "200 200 200 429 " {
		t.Errorf("admin requests: got %s, want three 200 then 429", codes)
	}
	// The ingest budget is separate: the game still gets its three.
	for range 3 {
		s.ingest(t, `[{"event_type":"t","application":"a","version":"1","platform":"p","user_id":"u","session_id":"s","value":{},"api_key":"`+ingestKey+`"}]`)
	}
}

func TestExport_HTTP(t *testing.T) {
	s := start(t, nil)
	s.ingest(t, `[{"event_type":"t","application":"a","version":"1","platform":"p","user_id":"u1","session_id":"s","value":{"x":1e99999},"api_key":"`+ingestKey+`"},
		{"event_type":"t","application":"b","version":"1","platform":"p","user_id":"u2","session_id":"s","value":{"e":"😀"},"api_key":"`+ingestKey+`"}]`)
	resp, body := s.do(t, "GET", "/v1.0/export?application=b", adminKey, "Accept-Encoding", "gzip")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("got %d, encoding %q", resp.StatusCode, resp.Header.Get("Content-Encoding"))
	}
	var row map[string]any
	if err := json.Unmarshal([]byte(body), &row); err != nil {
		t.Fatalf("%q: %v", body, err)
	}
	if row["user_id"] != "u2" || row["id"] != 2.0 || row["value"].(map[string]any)["e"] != "😀" {
		t.Errorf("row: got %v", row)
	}
	if got := resp.Trailer.Get(admin.TrailerLastID); got != "2" {
		t.Errorf("trailer %s: got %q, want 2", admin.TrailerLastID, got)
	}
}

func TestExport_BadParams(t *testing.T) {
	s := start(t, nil)
	for _, tc := range []struct{ query, param string }{
		{"format=xml", "format"},
		{"since=2026-13-01", "since"},
		{"until=yesterday", "until"},
		{"since=2026-11-02&until=2026-11-01", "until"},
		{"after_id=-1", "after_id"},
		{"after_id=1e3", "after_id"},
		{"limit=0", "limit"},
		{"limit=-5", "limit"},
		{"limit=99999999999999999999999", "limit"},
		{"limit=1000000001", "limit"},
		{"application=" + strings.Repeat("x", 1500), "application"},
	} {
		resp, body := s.do(t, "GET", "/v1.0/export?"+tc.query, adminKey)
		var p struct {
			Detail []struct{ Loc []string } `json:"detail"`
		}
		if resp.StatusCode != 422 || json.Unmarshal([]byte(body), &p) != nil || len(p.Detail) != 1 ||
			strings.Join(p.Detail[0].Loc, ".") != "query."+tc.param {
			t.Errorf("%.40s: got %d %s, want 422 naming %s", tc.query, resp.StatusCode, body, tc.param)
		}
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	db := filepath.Join(t.TempDir(), "sub", "events.db")
	k1, created, err := admin.LoadOrCreateKey(db)
	if err != nil || !created || len(k1) < 40 {
		t.Fatalf("first: %q, %v, %v", k1, created, err)
	}
	fi, err := os.Stat(admin.KeyFile(db))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v, %v; want 0600", fi.Mode(), err)
	}
	os.Chmod(admin.KeyFile(db), 0o644)
	k2, created, err := admin.LoadOrCreateKey(db)
	if err != nil || created || k2 != k1 {
		t.Fatalf("second start: %q, %v, %v; want the same key", k2, created, err)
	}
	if fi, _ := os.Stat(admin.KeyFile(db)); fi.Mode().Perm() != 0o600 {
		t.Errorf("loose mode not tightened: %v", fi.Mode())
	}
}

func TestDashboardURL(t *testing.T) {
	for addr, want := range map[string]string{
		"0.0.0.0:8000":     "http://127.0.0.1:8000/dashboard#key=K",
		"192.0.2.7:80":     "http://192.0.2.7:80/dashboard#key=K",
		"[2001:db8::1]:80": "http://[2001:db8::1]:80/dashboard#key=K",
	} {
		a, _ := net.ResolveTCPAddr("tcp", addr)
		if got := admin.DashboardURL(a, false, "K"); got != want {
			t.Errorf("%s: got %s, want %s", addr, got, want)
		}
	}
}
