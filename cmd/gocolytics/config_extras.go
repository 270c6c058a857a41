package main

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/gocolytics/gocolytics/ingest"
)

// DefaultCORSOrigins lets a web page of any origin post events, as a game's
// web export is served from wherever its author puts it.
const DefaultCORSOrigins = "*"

// parseCORSOrigins reads CORS_ORIGINS: "*", a comma-separated list of
// origins such as https://game.example, or "off" or empty for none (an
// empty, non-nil list).
func parseCORSOrigins(v string) ([]string, error) {
	v = strings.TrimSpace(v)
	if v == "" || strings.EqualFold(v, "off") {
		return []string{}, nil
	}
	var out []string
	for _, o := range strings.Split(v, ",") {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "*" {
			out = append(out, o)
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("%q is not an origin such as https://game.example or http://localhost:8060", o)
		}
		out = append(out, strings.ToLower(u.Scheme)+"://"+strings.ToLower(u.Host))
	}
	return out, nil
}

// parseMetricsAddr reads METRICS_ADDR (and ADMIN_ADDR, which reads alike):
// empty serves /healthz and /metrics on the main listener, "off" nowhere,
// host:port on a listener of their own.
func parseMetricsAddr(v string) (ingest.OpsMode, string, error) {
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return ingest.OpsShared, "", nil
	case strings.EqualFold(v, "off"):
		return ingest.OpsOff, "", nil
	}
	if _, _, err := net.SplitHostPort(v); err != nil {
		return 0, "", fmt.Errorf("%q is not empty, off or host:port such as 127.0.0.1:9100", v)
	}
	return ingest.OpsSeparate, v, nil
}
