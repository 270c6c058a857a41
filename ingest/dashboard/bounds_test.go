package dashboard_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/ingest/dashboard"
	"github.com/gocolytics/gocolytics/shard/query/querytest"
)

// TestStats_TimeLimit: a stats request whose queries run past the time
// limit answers 503 with a detail, not 500 and not a wait without end.
func TestStats_TimeLimit(t *testing.T) {
	base := serveDashboard(t, dashboard.Config{
		Source:  querytest.OpenReader(t, querytest.Known(t)),
		Guard:   keyGuard{ingest.NewKeys([]string{adminKey})},
		Now:     func() time.Time { return november10 },
		Timeout: time.Nanosecond,
	})
	for _, path := range []string{"/v1.0/stats?application=Game", "/v1.0/stats/recent"} {
		code, _, body := get(t, base+path, adminKey)
		if code != 503 || !strings.Contains(body, "took too long") {
			t.Errorf("%s: got %d %s, want 503 saying the query took too long", path, code, body)
		}
	}
}
