package systemd_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
)

// systemdAnalyze returns the path of systemd-analyze, or skips the test.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	return gctest.NeedProgram(t, "systemd-analyze", "systemd")
}

// directives reads a unit file into "Section.Key" -> values.
func directives(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, _ := strings.Cut(line, "=")
			m[section+"."+k] = append(m[section+"."+k], v)
		}
	}
	return m
}

func TestUnits_Directives(t *testing.T) {
	svc := directives(t, "gocolytics.service")
	sock := directives(t, "gocolytics.socket")
	for _, c := range []struct {
		got  map[string][]string
		key  string
		want string
	}{
		{svc, "Service.Type", "notify"},
		{svc, "Service.DynamicUser", "yes"},
		{svc, "Service.StateDirectory", "gocolytics"},
		{svc, "Service.Environment", "SQLITE_FILE_PATH=/var/lib/gocolytics/database.db"},
		{svc, "Service.ExecStart", "/usr/local/bin/gocolytics --env-file=/etc/gocolytics/gocolytics.env"},
		{svc, "Service.ExecReload", "/bin/kill -HUP $MAINPID"},
		{svc, "Service.WatchdogSec", "30s"},
		{svc, "Service.Restart", "on-failure"},
		{svc, "Service.SupplementaryGroups", "gocolytics-config"},
		{svc, "Service.MemoryHigh", "192M"},
		{svc, "Service.MemoryMax", "256M"},
		{svc, "Service.CapabilityBoundingSet", ""},
		{svc, "Service.ProtectSystem", "strict"},
		{svc, "Service.PrivateTmp", "yes"},
		{svc, "Service.NoNewPrivileges", "yes"},
		{svc, "Service.RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"},
		{svc, "Service.SystemCallFilter", "@system-service"},
		{svc, "Unit.Requires", "gocolytics.socket"},
		{sock, "Socket.ListenStream", "8080"},
		{sock, "Install.WantedBy", "sockets.target"},
	} {
		if !slices.Contains(c.got[c.key], c.want) {
			t.Errorf("%s = %q, want %q among them", c.key, c.got[c.key], c.want)
		}
	}
}

// TestUnits_Verify runs systemd-analyze verify on both units. It exits 0 on
// warnings, so the test wants no output at all. verify checks that
// ExecStart= is executable: the copies checked here name the freshly built
// binary instead of /usr/local/bin/gocolytics, and are otherwise the same.
func TestUnits_Verify(t *testing.T) {
	analyze := systemdAnalyze(t)
	dir := t.TempDir()
	for _, name := range []string{"gocolytics.service", "gocolytics.socket"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "/usr/local/bin/gocolytics", gctest.Binary(t))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(analyze, "verify", filepath.Join(dir, "gocolytics.socket"), filepath.Join(dir, "gocolytics.service")).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

var exposure = regexp.MustCompile(`Overall exposure level for gocolytics\.service: (\d+\.\d+)`)

// TestUnits_Security wants an exposure of at most 1.5 from
// systemd-analyze security (--threshold=15 makes it exit non-zero above).
func TestUnits_Security(t *testing.T) {
	analyze := systemdAnalyze(t)
	out, err := exec.Command(analyze, "security", "--offline=true", "--threshold=15", "gocolytics.service").CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security --offline=true --threshold=15: %v\n%s", err, out)
	}
	m := exposure.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	if score > 1.5 {
		t.Errorf("exposure %.1f, want at most 1.5:\n%s", score, out)
	}
}
