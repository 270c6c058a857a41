// Package ingest owns HTTP: routing, decoding and validating events, API
// keys, request limits, the 429 of the rate limit, CORS, compressed bodies,
// the API docs, /healthz and /metrics, all through one middleware chain
// (chain.go). It hands valid events to a Committer and answers 204 only
// once the Committer reports them committed. It never touches SQLite.
//
// Jobs with a life of their own have rooms of their own: ingest/ratelimit
// (the budgets and who a client is), ingest/workers (the worker processes),
// ingest/admin (admin keys, export, erasure) and ingest/dashboard (the
// stats API and the page).
package ingest
