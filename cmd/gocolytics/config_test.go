package main

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
	"github.com/gocolytics/gocolytics/ingest"
)

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadConfig_Defaults(t *testing.T) {
	c, err := LoadConfig([]string{"--env-file", gctest.EnvFile(t, "")}, mapEnv(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.SQLiteFilePath != DefaultSQLiteFilePath || c.Host != "127.0.0.1" || c.Port != 8000 || c.RateLimit != "60/minute" ||
		len(c.APIKeys) != 1 || c.APIKeys[0] != ingest.DevKey || !c.DevKeyOnly || c.Synchronous != "FULL" || !c.LenientJSON ||
		c.LocalTime || c.BusyTimeout != 5*time.Second || c.Limits != ingest.DefaultLimits() {
		t.Errorf("defaults: got %+v", c)
	}
	// No .env at all is fine when the default one is missing.
	dir := t.TempDir()
	t.Chdir(dir)
	if _, err := LoadConfig(nil, mapEnv(nil), io.Discard); err != nil {
		t.Errorf("without .env: %v", err)
	}
}

// TestLoadConfig_Precedence: .env < environment < flags.
func TestLoadConfig_Precedence(t *testing.T) {
	f := gctest.EnvFile(t, "# Pycolytics' .env\nAPI_KEYS='[\"from-file\"]'\nRATE_LIMIT=\"10/second\"\nSQLITE_FILE_PATH=\"file.db\"\nPORT=\"1\"\n")
	env := mapEnv(map[string]string{"RATE_LIMIT": "20 per minute", "PORT": "2"})
	c, err := LoadConfig([]string{"--env-file", f, "--port", "3"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.APIKeys[0] != "from-file" || c.DevKeyOnly || c.RateLimit != "20 per minute" || c.SQLiteFilePath != "file.db" || c.Port != 3 {
		t.Errorf("got keys %v rate %q path %q port %d", c.APIKeys, c.RateLimit, c.SQLiteFilePath, c.Port)
	}
	if len(c.Rates) != 1 || c.Rates[0].String() != "20 per 1 minute" {
		t.Errorf("rates: %v", c.Rates)
	}
}

// TestLoadConfig_Invalid: every bad setting is named in one error.
func TestLoadConfig_Invalid(t *testing.T) {
	f := gctest.EnvFile(t, "API_KEYS=\"not json\"\n")
	env := mapEnv(map[string]string{"RATE_LIMIT": "lots", "MAX_BODY_BYTES": "-1", "SQLITE_SYNCHRONOUS": "OFF"})
	_, err := LoadConfig([]string{"--env-file", f, "--port", "99999", "--shutdown-timeout", "soon"}, env, io.Discard)
	var ce *configError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a configError", err)
	}
	for _, name := range []string{"API_KEYS", "RATE_LIMIT", "MAX_BODY_BYTES", "SQLITE_SYNCHRONOUS", "PORT", "SHUTDOWN_TIMEOUT"} {
		if !strings.Contains(err.Error(), name+":") {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
	for _, bad := range [][]string{{"--api-keys", "[]"}, {"--api-keys", `["a",""]`}, {"--env-file", "/nonexistent/.env"}} {
		if _, err := LoadConfig(bad, mapEnv(nil), io.Discard); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
	var ue *usageError
	if _, err := LoadConfig([]string{"--no-such-flag"}, mapEnv(nil), io.Discard); !errors.As(err, &ue) {
		t.Errorf("unknown flag: got %v, want a usageError", err)
	}
}
