package gctest

import (
	"os"
	"os/exec"
	"path/filepath"
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

// NeedProgram returns the path of a program the test drives (looked up in
// PATH, then in /usr/sbin and /sbin, where Debian puts daemons such as
// nginx), or skips the test saying which Debian package has it; .ci/run
// installs every package in .ci/packages.
func NeedProgram(tb testing.TB, name, debianPackage string) string {
	tb.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	tb.Skipf("%s is not installed (Debian package %s; .ci/run installs it)", name, debianPackage)
	return ""
}
