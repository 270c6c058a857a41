package gctest

import (
	"os"
	"testing"
)

// The switches for the slow suites. A newcomer's `go test -race ./...`
// runs neither; .ci/run sets GOCOLYTICS_FAULT_LONG=1, which runs all of the
// fault suite at full length.
const (
	// FaultEnv runs the fault suite (kill -9, disk full, locks, floods,
	// slow clients) in its short form: GOCOLYTICS_FAULT=1.
	FaultEnv = "GOCOLYTICS_FAULT"
	// FaultLongEnv runs it at full length (more rounds, more connections):
	// GOCOLYTICS_FAULT_LONG=1. It implies FaultEnv.
	FaultLongEnv = "GOCOLYTICS_FAULT_LONG"
)

// FaultLong reports whether the fault suite runs at full length.
func FaultLong() bool { return os.Getenv(FaultLongEnv) == "1" }

// NeedFault skips the test unless the fault suite is switched on.
func NeedFault(tb testing.TB) {
	tb.Helper()
	if os.Getenv(FaultEnv) != "1" && !FaultLong() {
		tb.Skipf("part of the fault suite: set %s=1 (or %s=1, as .ci/run does) to run it", FaultEnv, FaultLongEnv)
	}
}
