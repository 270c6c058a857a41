package forward

import "time"

// WithBackoff returns c with the first and the longest wait between
// attempts to reach PostgreSQL set, so that a test's cut connections and
// refusals cost milliseconds instead of the production 1 s to 10 s.
func WithBackoff(c Config, first, longest time.Duration) Config {
	c.backoff, c.maxBackoff = first, longest
	return c
}
