// Command gocolytics is a drop-in replacement for the Pycolytics analytics
// server: it takes events over HTTP and commits them to one SQLite database
// before it answers.
//
// It wires the packages together and nothing else: the settings are
// config.go (one table of every setting); serve.go is the one lifecycle
// (READY, status, watchdog, SIGHUP, STOPPING, ordered shutdown), the one
// socket chooser and the one TLS loader (tls.go), which each mode drives:
// the single process (run.go), and the supervisor and its workers
// (workers.go).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal the default action returns, so a second
		// one ends the process at once.
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "gocolytics:", err)
		var ce *configError
		var ue *usageError
		if errors.As(err, &ce) || errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
