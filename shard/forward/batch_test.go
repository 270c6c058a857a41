package forward

import "testing"

// TestStoredTime: the hand-written reader of the writer's own time format
// gives what parseTime gives, and leaves everything else to it.
func TestStoredTime(t *testing.T) {
	for _, s := range []string{
		"2026-11-30 01:02:03.456789", "2000-01-01 00:00:00.000000", "1999-12-31 23:59:59.999999",
		"2024-02-29 12:00:00.000001", "2026-02-30 00:00:00.000000", "2026-13-01 00:00:00.000000",
		"2026-11-30 24:00:00.000000", "2026-11-30T01:02:03.456789", "2026-11-30 01:02:03", "2026-11-30 01:02:03.45678x",
		"2026-11-30 01:02:03+02:00", "", "garbage",
	} {
		got, gotOK := storedTime([]byte(s))
		want, wantOK := parseTime(s)
		if !got.Equal(want) || gotOK != wantOK || got.Location() != want.Location() {
			t.Errorf("storedTime(%q) = %v, %v; parseTime gives %v, %v", s, got, gotOK, want, wantOK)
		}
	}
}
