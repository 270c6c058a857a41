package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gocolytics/gocolytics/ingest"
	"github.com/gocolytics/gocolytics/ingest/ratelimit"
	"github.com/gocolytics/gocolytics/shard"
	"github.com/gocolytics/gocolytics/shard/forward"
)

// Defaults that are not another package's.
const (
	DefaultSQLiteFilePath  = "databases/database.db"
	DefaultRateLimit       = "60/minute"
	DefaultHost            = "127.0.0.1"
	DefaultPort            = 8000
	DefaultShutdownTimeout = 10 * time.Second
	DefaultEnvFile         = ".env"
)

// The values of STATS_SOURCE.
const (
	StatsSQLite   = "sqlite"
	StatsPostgres = "postgres"
)

// Config is every setting, typed.
type Config struct {
	SQLiteFilePath string
	APIKeys        []string
	// DevKeyOnly is set when no keys were configured and the dev key is
	// accepted in their place.
	DevKeyOnly     bool
	RateLimit      string
	Rates          []ratelimit.Rate
	TrustedProxies []netip.Prefix
	// ClientIPHeader is the header trusted proxies name the client in.
	ClientIPHeader ratelimit.ClientIPHeader
	// RateLimitClients caps the clients the rate limit tracks.
	RateLimitClients int

	Host         string
	Port         int
	Limits       ingest.Limits
	LenientJSON  bool
	LocalTime    bool
	Synchronous  string
	BusyTimeout  time.Duration
	CacheSizeKiB int
	// MergeInterval is the staging table's merge interval; negative is
	// off (the group commit inserts into event directly).
	MergeInterval time.Duration
	MergeRows     int
	// MergeBudget is MERGE_BUDGET; 0 is off (one merge moves up to
	// 50,000 events whatever it takes).
	MergeBudget time.Duration
	// MergeQuietInterval is MERGE_QUIET_INTERVAL; 0 is 5 × MergeInterval.
	MergeQuietInterval time.Duration
	// CommitQuietWait is COMMIT_QUIET_WAIT; negative is off.
	CommitQuietWait time.Duration
	// SummaryInterval is SUMMARY_INTERVAL; negative keeps no summaries.
	SummaryInterval   time.Duration
	PageSize          int
	WALAutocheckpoint int
	ShutdownTimeout   time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxConnsPerIP     int
	// MaxInflightBytes caps request bodies in memory at once.
	MaxInflightBytes int
	LogLevel         string
	// Workers is the number of worker processes serving HTTP; 1 means
	// this process alone.
	Workers int
	// TLSCertFile and TLSKeyFile, when set, make the server speak HTTPS.
	TLSCertFile string
	TLSKeyFile  string
	// CORSOrigins are the origins whose pages may post (see
	// parseCORSOrigins).
	CORSOrigins   []string
	Docs          bool
	DocsAssetsURL string
	// Ops and MetricsAddr say where /healthz and /metrics are served.
	Ops         ingest.OpsMode
	MetricsAddr string
	// DataOut holds the settings of getting data out (config_dataout.go).
	DataOut DataOutConfig
	// Admin and AdminAddr say where the dashboard, the stats API and the
	// admin endpoints are served (ADMIN_ADDR).
	Admin     ingest.OpsMode
	AdminAddr string

	// Forward holds POSTGRES_URL, NODE_ID and the batch settings; forwarding
	// is on when Forward.PostgresURL is set.
	Forward forward.Config
	// LocalRetentionDays, with forwarding on, deletes local rows older
	// than this many days once they are in PostgreSQL; 0 keeps them.
	LocalRetentionDays int
	// StatsSource is where the stats API, the dashboard and export read:
	// StatsSQLite (the node's own database) or StatsPostgres (every node's
	// rows, in POSTGRES_URL's database).
	StatsSource string

	EnvFile string
	Version bool
}

// setting is one configuration name: its environment name, its default as
// text, what it means, and how it is read into a Config.
type setting struct {
	name, def, help string
	set             func(c *Config, v string) error
}

func intSetting(dst func(*Config) *int, min int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		if n < min {
			return fmt.Errorf("%d is less than %d", n, min)
		}
		*dst(c) = n
		return nil
	}
}

func durationSetting(dst func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d <= 0 {
			return fmt.Errorf("%q is not a positive duration such as 5s or 1m", v)
		}
		*dst(c) = d
		return nil
	}
}

func boolSetting(dst func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		*dst(c) = b
		return nil
	}
}

// settings lists every setting. Pycolytics' names come first.
var settings = []setting{
	{"SQLITE_FILE_PATH", DefaultSQLiteFilePath, "the SQLite database file; missing folders are created", func(c *Config, v string) error {
		if strings.TrimSpace(v) == "" {
			return errors.New("must not be empty")
		}
		c.SQLiteFilePath = v
		return nil
	}},
	{"API_KEYS", "", `accepted API keys, a JSON list such as ["key1","key2"]; none means the dev key`, func(c *Config, v string) error {
		var keys []string
		if err := json.Unmarshal([]byte(v), &keys); err != nil {
			return fmt.Errorf("not a JSON list of strings: %v", err)
		}
		if len(keys) == 0 {
			return errors.New("the list is empty: no request could be accepted")
		}
		for i, k := range keys {
			if k == "" {
				return fmt.Errorf("key %d is empty", i)
			}
		}
		c.APIKeys, c.DevKeyOnly = keys, false
		return nil
	}},
	{"RATE_LIMIT", DefaultRateLimit, `requests per client, as "60/minute" or "5 per 2 hours"; "off" or empty for none`, func(c *Config, v string) error {
		r, err := ratelimit.Parse(v)
		if err != nil {
			return err
		}
		c.RateLimit, c.Rates = v, r
		return nil
	}},
	{"TRUSTED_PROXIES", ratelimit.DefaultTrustedProxies, "addresses or CIDRs of reverse proxies whose CLIENT_IP_HEADER names the client; empty for none", func(c *Config, v string) error {
		p, err := ratelimit.ParseTrustedProxies(v)
		if err != nil {
			return err
		}
		c.TrustedProxies = p
		return nil
	}},
	{"CLIENT_IP_HEADER", "none", "the one header a proxy in TRUSTED_PROXIES names the client in: X-Forwarded-For (rightmost hop not a trusted proxy), X-Real-IP, or none (the TCP peer)", func(c *Config, v string) (err error) {
		c.ClientIPHeader, err = ratelimit.ParseClientIPHeader(v)
		return err
	}},
	{"RATE_LIMIT_CLIENTS", strconv.Itoa(ratelimit.DefaultMaxClients), "most clients the rate limit tracks (and as many networks); when full, a new client spends its network's budget (IPv4 /24, IPv6 /48)", intSetting(func(c *Config) *int { return &c.RateLimitClients }, 1)},
	{"HOST", DefaultHost, "address to listen on", func(c *Config, v string) error { c.Host = strings.TrimSpace(v); return nil }},
	{"PORT", strconv.Itoa(DefaultPort), "port to listen on (0 picks a free one)", func(c *Config, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("%q is not a port number (0 to 65535)", v)
		}
		c.Port = n
		return nil
	}},
	{"MAX_BODY_BYTES", strconv.Itoa(ingest.DefaultMaxBodyBytes), "largest request body (413 above)", intSetting(func(c *Config) *int { return &c.Limits.MaxBodyBytes }, 1024)},
	{"MAX_BATCH_EVENTS", strconv.Itoa(ingest.DefaultMaxBatchEvents), "most events in one request (413 above)", intSetting(func(c *Config) *int { return &c.Limits.MaxBatchEvents }, 1)},
	{"MAX_STRING_LENGTH", strconv.Itoa(ingest.DefaultMaxStringLength), "most characters in each string field (422 above)", intSetting(func(c *Config) *int { return &c.Limits.MaxStringLength }, 1)},
	{"MAX_VALUE_BYTES", strconv.Itoa(ingest.DefaultMaxValueBytes), "largest value object as JSON text (422 above)", intSetting(func(c *Config) *int { return &c.Limits.MaxValueBytes }, 2)},
	{"MAX_JSON_DEPTH", strconv.Itoa(ingest.DefaultMaxDepth), "deepest nesting of a request body (422 above)", intSetting(func(c *Config) *int { return &c.Limits.MaxDepth }, 3)},
	{"LENIENT_JSON", "true", "accept Godot's bare nan/inf (stored as null) and empty batch elements", boolSetting(func(c *Config) *bool { return &c.LenientJSON })},
	{"LOCAL_TIME", "false", "write the time column in local time instead of UTC, as Pycolytics did", boolSetting(func(c *Config) *bool { return &c.LocalTime })},
	{"SQLITE_SYNCHRONOUS", shard.DefaultSynchronous, "FULL (a 204 survives a power cut), EXTRA or NORMAL", func(c *Config, v string) error {
		v = strings.ToUpper(strings.TrimSpace(v))
		switch v {
		case "FULL", "EXTRA", "NORMAL":
			c.Synchronous = v
			return nil
		}
		return fmt.Errorf("%q is not FULL, EXTRA or NORMAL", v)
	}},
	{"SQLITE_BUSY_TIMEOUT", shard.DefaultBusyTimeout.String(), "how long a commit waits for another process's lock before a 503", durationSetting(func(c *Config) *time.Duration { return &c.BusyTimeout })},
	{"SQLITE_CACHE_SIZE_KIB", strconv.Itoa(shard.DefaultCacheSizeKiB), "page cache of the writer connection", intSetting(func(c *Config) *int { return &c.CacheSizeKiB }, 64)},
	{"MERGE_INTERVAL", shard.DefaultMergeInterval.String(), "how long an event waits at most, under load, in the staging table before it is in the event table (while fewer than 1,000 events are staged: MERGE_QUIET_INTERVAL); off or 0 writes into event directly (more bytes written per event)", func(c *Config, v string) error {
		v = strings.TrimSpace(v)
		if v == "off" || v == "0" {
			c.MergeInterval = -1
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%q is not off or a positive duration such as 1s", v)
		}
		c.MergeInterval = d
		return nil
	}},
	{"MERGE_QUIET_INTERVAL", "", "how long an event waits at most in the staging table while fewer than 1,000 events are staged (default 5 × MERGE_INTERVAL); longer writes fewer bytes per event when the game is quiet, and event (the stats, the dashboard, forwarding) lags that much behind event_all", durationSetting(func(c *Config) *time.Duration { return &c.MergeQuietInterval })},
	{"COMMIT_QUIET_WAIT", shard.DefaultCommitQuietWait.String(), "how long a request that finds the writer idle (no commit for at least as long) waits for others to share its commit; longer writes fewer bytes per event when the game is quiet and answers its requests that much later; a busy server never waits; off or 0 commits each such request at once", func(c *Config, v string) error {
		v = strings.TrimSpace(v)
		if v == "off" || v == "0" {
			c.CommitQuietWait = -1
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%q is not off or a positive duration such as 50ms", v)
		}
		c.CommitQuietWait = d
		return nil
	}},
	{"SUMMARY_INTERVAL", shard.DefaultSummaryInterval.String(), "how long an event waits at most before it is added to the dashboard's summary tables (the stats read the newer rows raw, and more of them the longer this is; 100,000 waiting rows start a pass sooner, and so do 10,000 once no request has come for 2 s); off keeps no summary tables (the stats read every row raw: slow on millions of rows)", func(c *Config, v string) error {
		v = strings.TrimSpace(v)
		if v == "off" {
			c.SummaryInterval = -1
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%q is not off or a positive duration such as 1m", v)
		}
		c.SummaryInterval = d
		return nil
	}},
	{"MERGE_ROWS", strconv.Itoa(shard.DefaultMergeRows), "merge the staging table as soon as it holds this many events", intSetting(func(c *Config) *int { return &c.MergeRows }, 1)},
	{"MERGE_BUDGET", "off", "about how long one merge transaction may take (requests that arrive meanwhile wait for it): a merge that needs longer is done in several, of 5,000 events or more, group commits between them, at the cost of more bytes written an event; off: one merge moves up to 50,000 events", func(c *Config, v string) error {
		v = strings.TrimSpace(v)
		if v == "off" || v == "0" {
			c.MergeBudget = 0
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%q is not off or a positive duration such as 100ms", v)
		}
		c.MergeBudget = d
		return nil
	}},
	{"SQLITE_PAGE_SIZE", "4096", "page size of a new database file, a power of two from 512 to 65536 (an existing file keeps its own)", func(c *Config, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 512 || n > 65536 || n&(n-1) != 0 {
			return fmt.Errorf("%q is not a power of two from 512 to 65536", v)
		}
		c.PageSize = n
		return nil
	}},
	{"SQLITE_WAL_AUTOCHECKPOINT", "1000", "WAL pages not yet in the database file after which a checkpoint copies them there (off the commit path, from a connection of its own)", intSetting(func(c *Config) *int { return &c.WALAutocheckpoint }, 1)},
	{"SHUTDOWN_TIMEOUT", DefaultShutdownTimeout.String(), "how long a shutdown waits for requests under way", durationSetting(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
	{"READ_TIMEOUT", ingest.DefaultReadTimeout.String(), "longest time to read one request", durationSetting(func(c *Config) *time.Duration { return &c.ReadTimeout })},
	{"WRITE_TIMEOUT", ingest.DefaultWriteTimeout.String(), "longest time to write one response", durationSetting(func(c *Config) *time.Duration { return &c.WriteTimeout })},
	{"IDLE_TIMEOUT", ingest.DefaultIdleTimeout.String(), "how long an idle keep-alive connection is kept", durationSetting(func(c *Config) *time.Duration { return &c.IdleTimeout })},
	{"MAX_CONNS_PER_IP", strconv.Itoa(ingest.DefaultMaxConnsPerIP), "most open connections from one client: an IPv4 address or an IPv6 /64 (raise it behind a proxy)", intSetting(func(c *Config) *int { return &c.MaxConnsPerIP }, 1)},
	{"MAX_INFLIGHT_BYTES", strconv.Itoa(ingest.DefaultMaxInflightBytes), "most bytes of request bodies (raw and decompressed) held in memory at once; past it requests get 503 and Retry-After: 1", intSetting(func(c *Config) *int { return &c.MaxInflightBytes }, 1<<20)},
	{"CORS_ORIGINS", DefaultCORSOrigins, "origins whose web pages may post events, comma-separated (https://game.example); * for any; off for none", func(c *Config, v string) (err error) {
		c.CORSOrigins, err = parseCORSOrigins(v)
		return err
	}},
	{"DOCS", "true", "serve the API documentation at /docs, /redoc and /openapi.json", boolSetting(func(c *Config) *bool { return &c.Docs })},
	{"DOCS_ASSETS_URL", "", "where /docs and /redoc load swagger-ui-bundle.js, swagger-ui.css and redoc.standalone.js from; empty for the public CDN", func(c *Config, v string) error {
		c.DocsAssetsURL = strings.TrimSpace(v)
		return nil
	}},
	{"METRICS_ADDR", "", "where /healthz and /metrics are served: empty for the main listener, off, or host:port for a listener of their own", func(c *Config, v string) (err error) {
		c.Ops, c.MetricsAddr, err = parseMetricsAddr(v)
		return err
	}},
	{"WORKERS", "1", "worker processes serving HTTP, all feeding this process's one database writer; 1 serves from this process alone", intSetting(func(c *Config) *int { return &c.Workers }, 1)},
	{"LOG_LEVEL", "info", "debug, info, warn or error", func(c *Config, v string) error {
		v = strings.ToLower(strings.TrimSpace(v))
		switch v {
		case "debug", "info", "warn", "error":
			c.LogLevel = v
			return nil
		}
		return fmt.Errorf("%q is not debug, info, warn or error", v)
	}},
	{"TLS_CERT_FILE", "", "PEM certificate (chain) to speak HTTPS with; re-read on SIGHUP", func(c *Config, v string) error { c.TLSCertFile = strings.TrimSpace(v); return nil }},
	{"TLS_KEY_FILE", "", "PEM private key of TLS_CERT_FILE", func(c *Config, v string) error { c.TLSKeyFile = strings.TrimSpace(v); return nil }},
	{"POSTGRES_URL", "", "forward every row to this PostgreSQL database (a postgres:// URL or key=value string); empty for none. Set it in .env or the environment, not on the command line, where ps shows it", func(c *Config, v string) error {
		c.Forward.PostgresURL = strings.TrimSpace(v)
		return nil
	}},
	{"NODE_ID", "", "this node's name in PostgreSQL, unique per node; empty for the host name", func(c *Config, v string) error { c.Forward.NodeID = strings.TrimSpace(v); return nil }},
	{"POSTGRES_BATCH_ROWS", strconv.Itoa(forward.DefaultBatchRows), "most rows forwarded in one PostgreSQL transaction", intSetting(func(c *Config) *int { return &c.Forward.BatchRows }, 1)},
	{"LOCAL_RETENTION_DAYS", "0", "with POSTGRES_URL: delete local rows older than this many days once they are in PostgreSQL (never rows not yet forwarded), at start and hourly; 0 keeps them", intSetting(func(c *Config) *int { return &c.LocalRetentionDays }, 0)},
	{"STATS_SOURCE", StatsSQLite, "where the stats API, the dashboard and export read: sqlite (this node's database) or postgres (POSTGRES_URL's database, so every node's events)", func(c *Config, v string) error {
		v = strings.ToLower(strings.TrimSpace(v))
		if v != StatsSQLite && v != StatsPostgres {
			return fmt.Errorf("%q is not sqlite or postgres", v)
		}
		c.StatsSource = v
		return nil
	}},
	{"POSTGRES_INTERVAL", forward.DefaultInterval.String(), "how often the forwarder looks for new rows once it has caught up", durationSetting(func(c *Config) *time.Duration { return &c.Forward.Interval })},
	{"ADMIN_KEYS", "", `keys that may read and manage data (export, erase, dashboard), a JSON list such as ["key1"], sent as "Authorization: Bearer KEY"; none means one generated into a file beside the database`, func(c *Config, v string) (err error) {
		c.DataOut.AdminKeys, err = parseAdminKeys(v)
		return err
	}},
	{"ADMIN_ADDR", "", "where the dashboard, the stats API and the admin endpoints (export, erase) are served: empty for the main listener, off, or host:port for a listener of their own (such as 127.0.0.1:8001 or a VPN address)", func(c *Config, v string) (err error) {
		c.Admin, c.AdminAddr, err = parseMetricsAddr(v)
		return err
	}},
	{"RETENTION_DAYS", "0", "delete rows older than this many days, at start and hourly; 0 keeps them forever", intSetting(func(c *Config) *int { return &c.DataOut.RetentionDays }, 0)},
	{"ERASE_EVENT_TYPE", "", "an ingested event of this type deletes every earlier row of its user_id and application; empty for none", func(c *Config, v string) error {
		c.DataOut.EraseEventType = strings.TrimSpace(v)
		return nil
	}},
	{"BACKUP_DIR", "", "folder for scheduled backups; empty for none", func(c *Config, v string) error { c.DataOut.BackupDir = strings.TrimSpace(v); return nil }},
	{"BACKUP_INTERVAL", DefaultBackupInterval.String(), "time between scheduled backups (with BACKUP_DIR)", durationSetting(func(c *Config) *time.Duration { return &c.DataOut.BackupInterval })},
	{"BACKUP_KEEP", strconv.Itoa(DefaultBackupKeep), "scheduled backups kept; older ones are deleted", intSetting(func(c *Config) *int { return &c.DataOut.BackupKeep }, 1)},
}

// flagName is a setting's command-line flag: PORT is --port, API_KEYS is
// --api-keys.
func flagName(env string) string {
	return strings.ReplaceAll(strings.ToLower(env), "_", "-")
}

// LoadConfig reads the settings: defaults, then the .env file, then the
// environment, then the command line, each overriding the one before. It
// reports every bad setting at once.
func LoadConfig(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (*Config, error) {
	return loadConfig(nil, args, lookupEnv, stderr)
}

// loadConfig is LoadConfig for the server (sub nil) or a subcommand, which
// adds its own flags and takes positional arguments (anywhere among the
// flags, or after "--").
func loadConfig(sub *subcommand, args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (*Config, error) {
	name := "gocolytics"
	if sub != nil {
		name += " " + sub.name
	}
	fset := flag.NewFlagSet(name, flag.ContinueOnError)
	fset.SetOutput(stderr)
	flags := map[string]*string{}
	for _, s := range settings {
		flags[s.name] = fset.String(flagName(s.name), "", fmt.Sprintf("%s (%s; default %q)", s.help, s.name, s.def))
	}
	envFile := fset.String("env-file", DefaultEnvFile, "the .env file to read")
	version := fset.Bool("version", false, "print the version and exit")
	if sub != nil {
		sub.flags(fset)
		fset.Usage = func() {
			fmt.Fprintf(stderr, "Usage: %s\n\n", sub.usage)
			fmt.Fprintf(stderr, "It reads the server's settings (.env, environment, the flags below).\n\n")
			fset.PrintDefaults()
		}
	}
	for rest := args; ; {
		if err := fset.Parse(rest); err != nil {
			return nil, &usageError{err}
		}
		if fset.NArg() == 0 {
			break
		}
		if sub == nil {
			return nil, &usageError{fmt.Errorf("unexpected argument %q", fset.Arg(0))}
		}
		if used := len(rest) - fset.NArg(); used > 0 && rest[used-1] == "--" {
			sub.positional = append(sub.positional, fset.Args()...)
			break
		}
		sub.positional = append(sub.positional, fset.Arg(0))
		rest = fset.Args()[1:]
	}
	c := &Config{EnvFile: *envFile, Version: *version}
	if c.Version {
		return c, nil
	}
	explicitEnvFile := false
	fset.Visit(func(f *flag.Flag) { explicitEnvFile = explicitEnvFile || f.Name == "env-file" })

	values := map[string]string{}
	for _, s := range settings {
		values[s.name] = s.def
	}
	var problems []string
	file, err := readDotenv(c.EnvFile, lookupEnv)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !explicitEnvFile:
	case err != nil:
		problems = append(problems, fmt.Sprintf("--env-file: read %s: %v", c.EnvFile, err))
	}
	set := map[string]bool{}
	for _, s := range settings {
		if v, ok := file[s.name]; ok {
			values[s.name], set[s.name] = v, true
		}
		if v, ok := lookupEnv(s.name); ok {
			values[s.name], set[s.name] = v, true
		}
	}
	fset.Visit(func(f *flag.Flag) {
		for _, s := range settings {
			if flagName(s.name) == f.Name {
				values[s.name], set[s.name] = *flags[s.name], true
			}
		}
	})
	c.APIKeys, c.DevKeyOnly = []string{ingest.DevKey}, true
	for _, s := range settings {
		if !set[s.name] && s.def == "" {
			continue
		}
		if err := s.set(c, values[s.name]); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", s.name, err))
		}
	}
	for i, k := range c.DataOut.AdminKeys {
		if slices.Contains(c.APIKeys, k) {
			problems = append(problems, fmt.Sprintf("ADMIN_KEYS: key %d is also an API key; API keys ship inside games and are public", i))
		}
	}
	if c.MaxInflightBytes < 2*c.Limits.MaxBodyBytes+2 {
		problems = append(problems, fmt.Sprintf("MAX_INFLIGHT_BYTES: %d is less than twice MAX_BODY_BYTES (%d): a body of that size and its decompressed form must fit", c.MaxInflightBytes, c.Limits.MaxBodyBytes))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		problems = append(problems, "TLS_CERT_FILE, TLS_KEY_FILE: set both for HTTPS, or neither")
	}
	if c.LocalRetentionDays > 0 && c.Forward.PostgresURL == "" {
		problems = append(problems, "LOCAL_RETENTION_DAYS: needs POSTGRES_URL (without forwarding, RETENTION_DAYS deletes old rows)")
	}
	if c.StatsSource == StatsPostgres && c.Forward.PostgresURL == "" {
		problems = append(problems, "STATS_SOURCE: postgres needs POSTGRES_URL")
	}
	if c.Forward.PostgresURL != "" {
		if c.Forward.NodeID == "" {
			c.Forward.NodeID = forward.DefaultNodeID()
		}
		c.Forward.SQLitePath = c.SQLiteFilePath
		c.Forward.RetentionDays = c.DataOut.RetentionDays
		c.Forward.EraseEventType = c.DataOut.EraseEventType
		if err := c.Forward.Validate(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, &configError{problems}
	}
	return c, nil
}

type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }

func (e *usageError) Unwrap() error { return e.err }

type configError struct{ problems []string }

func (e *configError) Error() string {
	return "invalid settings:\n  " + strings.Join(e.problems, "\n  ")
}

// lookupEnv is os.LookupEnv, in a variable so that tests need not change the
// process environment.
var lookupEnv = os.LookupEnv
