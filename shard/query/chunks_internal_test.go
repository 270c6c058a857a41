package query

import (
	"strings"
	"testing"
)

// SetChunkIDs makes the funnel and value statistics read pieces of at most
// n ids until the test ends, so that a small dataset has many. Not for
// tests that run in parallel.
func SetChunkIDs(tb testing.TB, n int64) {
	old := chunkIDs
	chunkIDs = n
	tb.Cleanup(func() { chunkIDs = old })
}

func TestCompareJoined(t *testing.T) {
	for _, c := range []struct{ a1, a2, b string }{
		{"2026-10-01", " 10:00:00", "2026-10-01 10:00:00"},
		{"2026-10-01", " 10:00:00", "2026-10-01 10:00:00.5"},
		{"2026-10-01", " 10:00:01", "2026-10-01 10:00:00.5"},
		{"2026-10-01", "", "2026-10-01"},
		{"2026-10-01", "", "2026-10-0"},
		{"2026-10-01", "", "2026-10-01 "},
		{"2026-10-02", "", "2026-10-01 23:59:59"},
		{"", "2026-10-01", "2026-10-01"},
		{"", "a", ""},
		{"", "", "a"},
		{"abc", "d", "ab"},
		{"abc", "d", "abz"},
	} {
		if got, want := compareJoined(c.a1, c.a2, c.b), strings.Compare(c.a1+c.a2, c.b); got != want {
			t.Errorf("compareJoined(%q, %q, %q) = %d, want %d", c.a1, c.a2, c.b, got, want)
		}
	}
}

// FunnelCounts is what the summaries' funnel did so far: funnels answered
// from the summaries, read again because the watermark moved, left to the
// raw rows because of a tail row before its user's time, and days and
// users whose raw rows were read.
type FunnelCounts struct{ Summaries, Moved, Disorder, BlockedDays, BlockedUsers int64 }

func FunnelCountsNow() FunnelCounts {
	return FunnelCounts{funnelStats.summaries.Load(), funnelStats.moved.Load(), funnelStats.disorder.Load(),
		funnelStats.blockedDays.Load(), funnelStats.blockedUsers.Load()}
}

// Sub is c - o.
func (c FunnelCounts) Sub(o FunnelCounts) FunnelCounts {
	return FunnelCounts{c.Summaries - o.Summaries, c.Moved - o.Moved, c.Disorder - o.Disorder,
		c.BlockedDays - o.BlockedDays, c.BlockedUsers - o.BlockedUsers}
}

// SetFunnelReadHook runs hook after each piece the summaries' funnel reads,
// until the test ends.
func SetFunnelReadHook(tb testing.TB, hook func()) {
	funnelReadHook = hook
	tb.Cleanup(func() { funnelReadHook = nil })
}

// ValueFromFields counts the value statistics read from the field
// registry's summary.
func ValueFromFields() int64 { return valueFromFields.Load() }

// JSONPath is jsonPath, for the tests that register fields.
var JSONPath = jsonPath
