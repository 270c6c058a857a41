package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
)

// TestExport_OutputDevice: export --output /dev/null writes to the device
// and leaves it a device (renaming a finished file over it, as for a
// regular file, replaced /dev/null with a file for the whole machine).
func TestExport_OutputDevice(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.db")
	writeDatabase(t, path)
	out, err := exec.Command(gctest.Binary(t), "export", "--env-file", gctest.EnvFile(t, ""), "--sqlite-file-path", path, "--output", os.DevNull).CombinedOutput()
	if err != nil {
		t.Fatalf("export --output %s: %v\n%s", os.DevNull, err, out)
	}
	if fi, err := os.Stat(os.DevNull); err != nil || fi.Mode()&os.ModeDevice == 0 {
		t.Fatalf("%s is no longer a device after export: %v %v", os.DevNull, fi.Mode(), err)
	}
}
