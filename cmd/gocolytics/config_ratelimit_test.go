package main

import (
	"io"
	"strings"
	"testing"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
	"github.com/gocolytics/gocolytics/ingest/ratelimit"
)

func TestLoadConfig_RateLimitSettings(t *testing.T) {
	load := func(env map[string]string) (*Config, error) {
		return LoadConfig([]string{"--env-file", gctest.EnvFile(t, "")}, mapEnv(env), io.Discard)
	}
	c, err := load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := prefixes(c); got != "127.0.0.0/8 ::1/128" || c.RateLimitClients != ratelimit.DefaultMaxClients {
		t.Errorf("defaults: TRUSTED_PROXIES %q, RATE_LIMIT_CLIENTS %d", got, c.RateLimitClients)
	}
	c, err = load(map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8::1", "RATE_LIMIT_CLIENTS": "5", "RATE_LIMIT": "off"})
	if err != nil {
		t.Fatal(err)
	}
	if got := prefixes(c); got != "10.0.0.0/8 2001:db8::1/128" || c.RateLimitClients != 5 || c.Rates != nil {
		t.Errorf("set: TRUSTED_PROXIES %q, RATE_LIMIT_CLIENTS %d, rates %v", got, c.RateLimitClients, c.Rates)
	}
	c, err = load(map[string]string{"TRUSTED_PROXIES": ""})
	if err != nil {
		t.Fatal(err)
	}
	if c.TrustedProxies == nil || len(c.TrustedProxies) != 0 {
		t.Errorf("empty TRUSTED_PROXIES: got %v, want an empty list (trust none)", c.TrustedProxies)
	}
	_, err = load(map[string]string{"TRUSTED_PROXIES": "proxy.example", "RATE_LIMIT": "60/fortnight", "RATE_LIMIT_CLIENTS": "0"})
	for _, name := range []string{"TRUSTED_PROXIES", "RATE_LIMIT:", "RATE_LIMIT_CLIENTS"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("bad settings: error %v does not name %s", err, name)
		}
	}
}

func prefixes(c *Config) string {
	var s []string
	for _, p := range c.TrustedProxies {
		s = append(s, p.String())
	}
	return strings.Join(s, " ")
}
