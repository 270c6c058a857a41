package ratelimit

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Rate is one limit of a RATE_LIMIT setting: Count requests per Multiplier
// Units.
type Rate struct {
	Count      int
	Multiplier int
	Unit       string // second, minute, hour, day, month or year
}

// Period is the length of the rate's window.
func (r Rate) Period() time.Duration {
	return time.Duration(r.Multiplier) * unitLength[r.Unit]
}

// String writes the rate as the Python limits library does, which is what
// Pycolytics put in its 429 answers: "60 per 1 minute".
func (r Rate) String() string {
	return fmt.Sprintf("%d per %d %s", r.Count, r.Multiplier, r.Unit)
}

// unitLength follows the limits library, in which a month is 30 days and a
// year 12 such months.
var unitLength = map[string]time.Duration{
	"second": time.Second,
	"minute": time.Minute,
	"hour":   time.Hour,
	"day":    24 * time.Hour,
	"month":  30 * 24 * time.Hour,
	"year":   12 * 30 * 24 * time.Hour,
}

// maxRatePeriod is the longest period a rate may have: 100 years.
const maxRatePeriod = 100 * 12 * 30 * 24 * time.Hour

var rateRE = regexp.MustCompile(`^\s*([0-9]+)\s*(?:/|\s[Pp][Ee][Rr]\s)\s*([0-9]+)?\s*([A-Za-z]+?)s?\s*$`)

// Parse reads the notation of the Python limits library: "60/minute",
// "60 per minute", "5 per 2 hours", several separated by ";", "," or "|".
// An empty value or "off" means no limit (a nil slice).
func Parse(s string) ([]Rate, error) {
	if t := strings.TrimSpace(s); t == "" || strings.EqualFold(t, "off") {
		return nil, nil
	}
	var rates []Rate
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == ',' || r == '|' }) {
		m := rateRE.FindStringSubmatch(part)
		if m == nil {
			return nil, fmt.Errorf("%q is not a rate such as 60/minute or 5 per 2 hours", strings.TrimSpace(part))
		}
		r := Rate{Multiplier: 1, Unit: strings.ToLower(m[3])}
		if _, ok := unitLength[r.Unit]; !ok {
			return nil, fmt.Errorf("%q: unknown unit %q (second, minute, hour, day, month, year)", strings.TrimSpace(part), m[3])
		}
		var err error
		if r.Count, err = strconv.Atoi(m[1]); err != nil || r.Count < 1 {
			return nil, fmt.Errorf("%q: the count must be a whole number of at least 1", strings.TrimSpace(part))
		}
		if m[2] != "" {
			if r.Multiplier, err = strconv.Atoi(m[2]); err != nil || r.Multiplier < 1 {
				return nil, fmt.Errorf("%q: the multiplier must be a whole number of at least 1", strings.TrimSpace(part))
			}
		}
		// A longer period would overflow time.Duration (and make a negative
		// refill rate) on its way to the token buckets.
		if r.Multiplier > int(maxRatePeriod/unitLength[r.Unit]) {
			return nil, fmt.Errorf("%q: the period must be at most 100 years", strings.TrimSpace(part))
		}
		rates = append(rates, r)
	}
	if len(rates) == 0 {
		return nil, fmt.Errorf("%q holds no rate", s)
	}
	return rates, nil
}
