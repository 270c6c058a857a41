package query

// The statistics: the SQL behind the stats API and the dashboard (users, new
// users, sessions, retention, breakdowns, funnels, value statistics, recent
// events). Every function reads through a read-only handle (a Querier, such
// as Reader) and never writes.

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// MaxRangeDays is the longest date range a statistics request may cover.
const MaxRangeDays = 400

// DayFormat is how days are written in requests and answers.
const DayFormat = "2006-01-02"

// Querier is the read-only handle the statistics read through: a *sql.DB
// opened read-only, or a pool that bounds concurrency and time per query.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// ParamError is a bad request parameter; the HTTP layer answers it with a
// 422 naming Param.
type ParamError struct {
	Param string
	Msg   string
}

func (e *ParamError) Error() string { return e.Param + ": " + e.Msg }

// Filter selects the events a statistic covers: one application, the days
// Since to Until (both inclusive, as the date part of the stored time), and
// optionally one version, platform or event type.
type Filter struct {
	Application string
	Since       time.Time
	Until       time.Time
	Version     string
	Platform    string
	EventType   string
}

// ParseDay reads a YYYY-MM-DD day for the parameter param.
func ParseDay(param, v string) (time.Time, error) {
	d, err := time.Parse(DayFormat, v)
	if err != nil {
		return time.Time{}, &ParamError{param, "must be a day as YYYY-MM-DD"}
	}
	return d, nil
}

// Validate checks the filter: an application, and a range of 1 to
// MaxRangeDays days.
func (f *Filter) Validate() error {
	switch {
	case f.Application == "":
		return &ParamError{"application", "field required"}
	case f.Since.IsZero():
		return &ParamError{"since", "field required"}
	case f.Until.IsZero():
		return &ParamError{"until", "field required"}
	case f.Until.Before(f.Since):
		return &ParamError{"until", "must not be before since"}
	case f.Days() > MaxRangeDays:
		return &ParamError{"until", fmt.Sprintf("the range may cover at most %d days", MaxRangeDays)}
	}
	return nil
}

// Days is the number of days of the range.
func (f *Filter) Days() int {
	return int(f.Until.Sub(f.Since).Hours()/24) + 1
}

// dayList lists the range's days as text, and the index of each.
func (f *Filter) dayList() ([]string, map[string]int) {
	days := make([]string, 0, f.Days())
	index := make(map[string]int, f.Days())
	for d := f.Since; !d.After(f.Until); d = d.AddDate(0, 0, 1) {
		index[d.Format(DayFormat)] = len(days)
		days = append(days, d.Format(DayFormat))
	}
	return days, index
}

// where returns the WHERE clause and arguments selecting the filter's
// events from since to until (days, inclusive). The time column is text as
// "2006-01-02 15:04:05.000000", so days compare as text prefixes; the bound
// "until + 1 day" is exclusive.
func (f *Filter) where(since, until time.Time, withFilters bool) (string, []any) {
	var b strings.Builder
	b.WriteString("application = ? AND time >= ? AND time < ?")
	args := []any{f.Application, since.Format(DayFormat), until.AddDate(0, 0, 1).Format(DayFormat)}
	if withFilters {
		for _, c := range []struct{ col, v string }{{"version", f.Version}, {"platform", f.Platform}, {"event_type", f.EventType}} {
			if c.v != "" {
				b.WriteString(" AND " + c.col + " = ?")
				args = append(args, c.v)
			}
		}
	}
	return b.String(), args
}

// Today is the current day as the time column counts days: local time when
// the server writes local time, else UTC.
func Today(now time.Time, localTime bool) time.Time {
	if !localTime {
		now = now.UTC()
	}
	return time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
}

// fieldPath matches a dotted path of value's fields: names of letters,
// digits, '_' and '-'.
var fieldPath = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

// jsonPath turns "a.b" into the SQLite JSON path `$."a"."b"`.
func jsonPath(field string) (string, error) {
	if len(field) > 200 || !fieldPath.MatchString(field) {
		return "", &ParamError{"field", "must be a dotted path of field names (letters, digits, _ and -)"}
	}
	return `$."` + strings.ReplaceAll(field, ".", `"."`) + `"`, nil
}

// parseTime reads the stored time text; Pycolytics wrote the same layout,
// with or without the fraction.
func parseTime(s string) (time.Time, error) {
	return time.Parse("2006-01-02 15:04:05.999999999", s)
}
