// Package pgquery opens the read side on PostgreSQL (STATS_SOURCE=postgres):
// a pool of read-only connections to the database the forwarders of every
// node fill (shard/forward), bounded in number and in time per query like
// the SQLite side, behind the same query.Source. The SQL itself is
// shard/query's, in its PostgreSQL dialect, so that one set of definitions
// answers from either database.
//
// It is a room of its own, not part of shard/forward: the forwarder writes
// and owns the schema; this package only reads it, in the stats API's and
// export's processes, and needs none of the forwarder's state.
package pgquery

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/gocolytics/gocolytics/shard/query"
)

// Open returns a Reader over the PostgreSQL database of url (a libpq URL
// or key=value string, as POSTGRES_URL). It does no I/O: PostgreSQL being
// down when the server starts never stops ingest; the queries answer an
// error until it is back. Every connection is read-only
// (default_transaction_read_only) and PostgreSQL itself ends a statement
// past o.Timeout (statement_timeout), besides the caller's context; at most
// o.MaxReaders queries run at once, more wait for a free connection up to
// their time limit.
func Open(url string, o query.Options) (*query.Reader, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// pgx's error shows the string with its password as xxxxx.
		return nil, fmt.Errorf("read POSTGRES_URL: %w", err)
	}
	if o.Timeout <= 0 {
		o.Timeout = query.DefaultTimeout
	}
	cfg.RuntimeParams["default_transaction_read_only"] = "on"
	cfg.RuntimeParams["statement_timeout"] = strconv.FormatInt(o.Timeout.Milliseconds(), 10)
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "gocolytics-stats"
	}
	o.Unreachable = unreachable
	return query.NewReader(stdlib.OpenDB(*cfg), query.Postgres, o), nil
}

// unreachable says whether err means PostgreSQL cannot be reached: no
// connection could be made, or the server is starting up or shutting down.
func unreachable(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08: connection exception; 57P01-57P03: admin shutdown,
		// crash shutdown, cannot connect now.
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	return errors.Is(err, driver.ErrBadConn)
}
