// Package ratelimit owns the request budget behind RATE_LIMIT: the
// notation parser (Parse), the in-process token buckets (LocalBudget),
// the client a request is counted against (ClientAddr, ClientKey,
// ParseTrustedProxies), and the codec with which worker processes spend the
// supervisor's one budget (LinkBudget, SharedBudget). It knows nothing of
// HTTP: ingest asks a Budget and answers 429.
package ratelimit
