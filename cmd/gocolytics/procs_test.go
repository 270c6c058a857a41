package main

import (
	"flag"
	"os"
	"runtime"
	"testing"

	"github.com/gocolytics/gocolytics/cmd/gocolytics/gctest"
)

func TestProcsWithWriter(t *testing.T) {
	for _, c := range []struct {
		env           string
		current, want int
	}{
		{"", 1, 3},
		{"", 2, 4},
		{"", 4, 6},
		{"2", 2, 2},
		{"1", 1, 1},
	} {
		if got := procsWithWriter(c.env, c.current); got != c.want {
			t.Errorf("procsWithWriter(%q, %d) = %d, want %d", c.env, c.current, got, c.want)
		}
	}
}

// TestServe_WriterProcs: the server runs with Go's default GOMAXPROCS plus
// a P for the writer and one for the checkpointer (go_gomaxprocs on
// /metrics), and with the GOMAXPROCS it is given when it is set. Not
// parallel: it sets the environment the binary inherits.
func TestServe_WriterProcs(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	os.Unsetenv("GOMAXPROCS")
	s := gctest.Start(t, "")
	got := gctest.Metrics(t, s.Addr)["go_gomaxprocs"]
	want := float64(runtime.GOMAXPROCS(0) + blockingGoroutines)
	if f := flag.Lookup("test.cpu"); f != nil && f.Value.String() != "" {
		// -cpu moved this process's GOMAXPROCS off the default.
		want = float64(1 + blockingGoroutines)
		if got < want {
			t.Errorf("go_gomaxprocs = %v, want at least %v", got, want)
		}
	} else if got != want {
		t.Errorf("go_gomaxprocs = %v, want %v (the default %d + %d)", got, want, runtime.GOMAXPROCS(0), blockingGoroutines)
	}

	t.Setenv("GOMAXPROCS", "1")
	s = gctest.Start(t, "")
	if got := gctest.Metrics(t, s.Addr)["go_gomaxprocs"]; got != 1 {
		t.Errorf("with GOMAXPROCS=1: go_gomaxprocs = %v, want 1", got)
	}
}
