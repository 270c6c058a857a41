package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/ingest/admin"
	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/query"
)

// subcommand is one of the data-out commands: gocolytics NAME [flags] ARGS.
// Each reads the server's settings (.env, environment, the server's flags)
// plus flags of its own.
type subcommand struct {
	name, usage string
	// nargs is the number of positional arguments it takes.
	nargs      int
	flags      func(fs *flag.FlagSet)
	run        func(ctx context.Context, cfg *Config, args []string, stdout, stderr io.Writer) error
	positional []string
}

// subcommands are the commands besides serving.
func subcommands() map[string]*subcommand {
	ex := &exportFlags{}
	fg := &forgetFlags{}
	return map[string]*subcommand{
		"export": {name: "export", usage: "gocolytics export [--format csv|ndjson] [--since T] [--until T] [--application A] [--event-type E] [--after-id N] [--limit N] [--output FILE]\n\n" +
			"Writes the event table's rows in id order, straight from the database file (even while a server runs on it),\n" +
			"to standard output or --output. T is a day (2026-11-01) or an RFC 3339 time, UTC; since is inclusive, until exclusive.",
			flags: ex.register, run: ex.run},
		"forget": {name: "forget", nargs: 1, usage: "gocolytics forget USER_ID [--application A]\n\n" +
			"Deletes every row of USER_ID (of application A only, with --application) and prints how many.\n" +
			"When a server runs on the database it goes through the server's writer (its control socket beside\n" +
			"the database); otherwise it opens the database itself. Use -- before a USER_ID that starts with -.",
			flags: fg.register, run: fg.run},
		"backup": {name: "backup", nargs: 1, usage: "gocolytics backup FILE\n\n" +
			"Writes a consistent copy of the database to FILE (VACUUM INTO from a read-only connection; safe while\n" +
			"a server ingests), checks it with PRAGMA integrity_check, and never overwrites FILE.",
			flags: func(*flag.FlagSet) {}, run: runBackup},
	}
}

// runSubcommand runs gocolytics NAME ARGS. --help prints the usage and
// succeeds; bad input is a usage or config error (exit 2).
func runSubcommand(ctx context.Context, sub *subcommand, args []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(sub, args, lookupEnv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.Version {
		fmt.Fprintln(stdout, versionLine())
		return nil
	}
	if len(sub.positional) != sub.nargs {
		return &usageError{fmt.Errorf("%s takes %d argument(s), got %d; see gocolytics %s --help", sub.name, sub.nargs, len(sub.positional), sub.name)}
	}
	return sub.run(ctx, cfg, sub.positional, stdout, stderr)
}

// exportFlags are the flags of gocolytics export.
type exportFlags struct {
	fs     *flag.FlagSet
	set    map[string]*string
	output *string
}

func (e *exportFlags) register(fs *flag.FlagSet) {
	e.fs, e.set = fs, map[string]*string{}
	for _, f := range []struct{ name, help string }{
		{"format", "csv or ndjson (default ndjson)"},
		{"since", "only rows at or after this day or time"},
		{"until", "only rows before this day or time"},
		{"application", "only this application's rows"},
		{"event-type", "only rows of this event type"},
		{"after-id", "only rows with a larger id (the last id of a previous export)"},
		{"limit", "at most this many rows"},
	} {
		e.set[f.name] = fs.String(f.name, "", f.help)
	}
	e.output = fs.String("output", "", "write to this file (written aside, then renamed) instead of standard output")
}

func (e *exportFlags) run(ctx context.Context, cfg *Config, _ []string, stdout, stderr io.Writer) error {
	given := map[string]bool{}
	e.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	req, prob := admin.ParseExportParams(func(name string) (string, bool) {
		f := strings.ReplaceAll(name, "_", "-")
		return *e.set[f], given[f]
	}, cfg.Limits.MaxStringLength)
	if prob != nil {
		return &usageError{errors.New(problemText(prob))}
	}
	r, err := openReader(cfg, nil)
	if err != nil {
		return &usageError{err}
	}
	defer r.Close()
	// The export runs aside, so that a signal ends the command even while
	// a write is blocked (a pipe or device nobody reads; opening a FIFO
	// with no reader blocks too): ctx stops the export at its next chunk,
	// and finish removes a temporary file; a write that does not return
	// is given exportStopGrace.
	type outcome struct {
		res query.ExportResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		out, finish, err := outputFile(*e.output, stdout)
		if err != nil {
			done <- outcome{err: err}
			return
		}
		bw := bufio.NewWriterSize(out, 64<<10)
		res, err := r.Export(ctx, req.Filter, req.Format, bw, nil)
		if err == nil {
			err = bw.Flush()
		}
		done <- outcome{res, finish(err)}
	}()
	var o outcome
	select {
	case o = <-done:
	case <-ctx.Done():
		select {
		case o = <-done:
		case <-time.After(exportStopGrace):
			return fmt.Errorf("export stopped by a signal while its output (%s) was not being read", outputName(*e.output))
		}
	}
	var ue *usageError
	switch {
	case errors.As(o.err, &ue):
		return o.err
	case o.err != nil && ctx.Err() != nil && isRegularTarget(*e.output):
		return fmt.Errorf("export stopped by a signal after %d rows; nothing was written to %s", o.res.Rows, *e.output)
	case o.err != nil && ctx.Err() != nil:
		return fmt.Errorf("export stopped by a signal after %d rows (written to %s)", o.res.Rows, outputName(*e.output))
	case o.err != nil:
		return fmt.Errorf("export: %w", o.err)
	}
	fmt.Fprintf(stderr, "exported %d rows; last id %d (continue with --after-id %d)\n", o.res.Rows, o.res.LastID, o.res.LastID)
	return nil
}

// exportStopGrace is how long export waits, after a signal, for a write in
// progress to return before it exits anyway.
const exportStopGrace = 2 * time.Second

// outputName is --output as a message names it.
func outputName(path string) string {
	if path == "" || path == "-" {
		return "standard output"
	}
	return path
}

// isRegularTarget reports whether export writes path through a temporary
// file (see outputFile), which an interrupted export removes.
func isRegularTarget(path string) bool {
	if path == "" || path == "-" {
		return false
	}
	fi, err := os.Stat(path)
	return err != nil || fi.Mode().IsRegular()
}

// problemText words a 422 for the command line: "--limit: must be ...".
func problemText(p *ingest.Problem) string {
	if len(p.Fields) == 0 || len(p.Fields[0].Loc) < 2 {
		return p.Detail
	}
	name, _ := p.Fields[0].Loc[1].(string)
	return "--" + strings.ReplaceAll(name, "_", "-") + ": " + p.Fields[0].Msg
}

// outputFile is stdout; for a path that is not a regular file (a device
// such as /dev/null, a pipe) that file itself, written in place; else a
// temporary file beside path that finish renames to path once everything
// is written (and removes on an error), so a failed export never leaves a
// half file behind under the name asked for.
func outputFile(path string, stdout io.Writer) (io.Writer, func(error) error, error) {
	if path == "" || path == "-" {
		return stdout, func(err error) error { return err }, nil
	}
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		// A device or a pipe (/dev/null, /dev/stdout, a FIFO) is written
		// to; renaming a file over it would replace /dev/null itself.
		if fi.IsDir() {
			return nil, nil, &usageError{fmt.Errorf("--output: %s is a folder", path)}
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return nil, nil, &usageError{fmt.Errorf("--output: %w", err)}
		}
		return f, func(err error) error {
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err
		}, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, nil, &usageError{fmt.Errorf("--output: %w", err)}
	}
	return f, func(err error) error {
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), path)
		}
		if err != nil {
			os.Remove(f.Name())
		}
		return err
	}, nil
}

// forgetFlags are the flags of gocolytics forget.
type forgetFlags struct{ application *string }

func (f *forgetFlags) register(fs *flag.FlagSet) {
	f.application = fs.String("application", "", "only this application's rows")
}

func (f *forgetFlags) run(ctx context.Context, cfg *Config, args []string, stdout, stderr io.Writer) error {
	user, app := args[0], *f.application
	max := cfg.Limits.MaxStringLength
	switch {
	case user == "":
		return &usageError{errors.New("USER_ID must not be empty")}
	case len([]rune(user)) > max:
		return &usageError{fmt.Errorf("USER_ID is longer than %d characters (MAX_STRING_LENGTH): no row can have it", max)}
	case len([]rune(app)) > max:
		return &usageError{fmt.Errorf("--application is longer than %d characters (MAX_STRING_LENGTH)", max)}
	}
	n, via, err := forget(ctx, cfg, user, app)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "{\"deleted\":%d}\n", n)
	fmt.Fprintf(stderr, "deleted %d rows (%s)\n", n, via)
	return nil
}

// forget erases through the running server's control socket when there is
// one, else through a writer of its own on the file.
func forget(ctx context.Context, cfg *Config, user, app string) (int64, string, error) {
	n, err := controlErase(cfg.SQLiteFilePath, user, app)
	if err == nil {
		return n, "through the running server's writer", nil
	}
	if !errors.Is(err, errNoControl) {
		return 0, "", err
	}
	if _, err := os.Stat(cfg.SQLiteFilePath); err != nil {
		return 0, "", &usageError{fmt.Errorf("no database at %s (SQLITE_FILE_PATH): %w", cfg.SQLiteFilePath, err)}
	}
	db := shard.New(cfg.SQLiteFilePath, shardOptions(cfg), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := db.Open(); err != nil {
		return 0, "", err
	}
	n, err = db.Erase(ctx, user, app)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return n, "no server was running on the database: deleted directly", err
}

func runBackup(ctx context.Context, cfg *Config, args []string, stdout, stderr io.Writer) error {
	dst := args[0]
	if _, err := os.Stat(cfg.SQLiteFilePath); err != nil {
		return &usageError{fmt.Errorf("no database at %s (SQLITE_FILE_PATH): %w", cfg.SQLiteFilePath, err)}
	}
	if abs, _ := filepath.Abs(dst); abs == mustAbs(cfg.SQLiteFilePath) {
		return &usageError{errors.New("FILE is the database itself")}
	}
	size, err := shard.Backup(ctx, cfg.SQLiteFilePath, dst, cfg.BusyTimeout)
	if errors.Is(err, shard.ErrBackupExists) {
		return &usageError{err}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "backup written to %s (%s bytes), integrity_check ok\n", dst, strconv.FormatInt(size, 10))
	return nil
}

func mustAbs(p string) string {
	a, _ := filepath.Abs(p)
	return a
}
