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
	if got := prefixes(c); got != "127.0.0.1/32 ::1/128" || c.RateLimitClients != ratelimit.DefaultMaxClients || c.ClientIPHeader != ratelimit.HeaderNone {
		t.Errorf("defaults: TRUSTED_PROXIES %q, RATE_LIMIT_CLIENTS %d, CLIENT_IP_HEADER %v", got, c.RateLimitClients, c.ClientIPHeader)
	}
	for v, want := range map[string]ratelimit.ClientIPHeader{"x-real-ip": ratelimit.HeaderRealIP, "X-Forwarded-For": ratelimit.HeaderForwardedFor, "none": ratelimit.HeaderNone} {
		if c, err := load(map[string]string{"CLIENT_IP_HEADER": v}); err != nil || c.ClientIPHeader != want {
			t.Errorf("CLIENT_IP_HEADER=%s: got %v, %v; want %v", v, c, err, want)
		}
	}
	if _, err := load(map[string]string{"CLIENT_IP_HEADER": "Forwarded"}); err == nil || !strings.Contains(err.Error(), "CLIENT_IP_HEADER") {
		t.Errorf("CLIENT_IP_HEADER=Forwarded: got %v, want an error naming the setting", err)
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
