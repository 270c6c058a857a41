package ratelimit

import (
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/didip/tollbooth/v7"
	"github.com/didip/tollbooth/v7/limiter"
)

// Budget is the per-client request budget behind RATE_LIMIT. Allow counts
// one request of client (a key from ClientKey) and says whether it may be
// served; when not, it names the Rate that was exceeded and how long the
// client should wait before trying again.
//
// The ingest server asks its Budget once per request, before reading the
// body. TollboothBudget is the in-process implementation. Budget is an interface
// so that several worker processes can spend one budget: a worker's Budget
// forwards Allow to the process that holds the buckets (a short key out,
// three small values back), so a client gets the same budget whichever
// worker answers it. Implementations must be safe for concurrent use.
type Budget interface {
	Allow(client string) (ok bool, exceeded Rate, retryAfter time.Duration)
}

// Defaults of the in-process budget.
const (
	// DefaultMaxClients is how many clients a TollboothBudget tracks at
	// most; see TollboothBudget for what happens when it is full.
	DefaultMaxClients = 100_000
	// MinBucketTTL is the shortest time a client's buckets are kept.
	MinBucketTTL = 10 * time.Minute
	// maxSweepInterval is how often, at most, expired buckets are swept.
	maxSweepInterval = time.Minute
)

// overflowKey is the budget shared by the clients that arrive while the
// table is full. No ClientKey looks like it.
const overflowKey = "overflow"

// TollboothOptions tune a TollboothBudget; a zero field means its default.
type TollboothOptions struct {
	// MaxClients caps the tracked clients (DefaultMaxClients).
	MaxClients int
	// TTL is how long a client's buckets live from their creation: by
	// default ten times the longest period of the rates, at least
	// MinBucketTTL.
	TTL time.Duration
	// Logger is told, at most once a minute, that the table is full.
	Logger *slog.Logger
}

// TollboothBudget keeps one token bucket per client and rate in
// github.com/didip/tollbooth limiters: each bucket holds up to Count tokens,
// starts full and refills continuously at Count per Period; a request takes
// one token from every rate's bucket, in the order the rates were written,
// and is refused by the first bucket that is empty (buckets before it have
// still spent their token; a refusing bucket spends none).
//
// Memory is bounded two ways. Buckets expire TTL after they were created
// (tollbooth counts from creation, not from the last request: a client
// still active then starts again with full buckets, at most Count extra
// requests per TTL, which is why the TTL is ten periods) and are swept at
// most a minute after they expire, by the request that notices the sweep is
// due. And at most MaxClients clients are tracked: while the table is full,
// every client not in it shares one overflow budget of the same rates, so a
// flood of distinct addresses neither grows memory nor gets more than one
// client's worth of requests through; clients already tracked keep their own
// budgets, and newcomers get theirs once the sweep has freed room.
type TollboothBudget struct {
	rates    []Rate
	opts     TollboothOptions
	limiters []*limiter.Limiter
	sweepGap time.Duration

	mu        sync.Mutex
	clients   map[string]int64 // key -> expiry of its buckets, Unix nanoseconds
	nextSweep time.Time
	nextWarn  time.Time
}

// NewTollboothBudget returns the in-process budget for rates, which must not
// be empty.
func NewTollboothBudget(rates []Rate, opts TollboothOptions) *TollboothBudget {
	if opts.MaxClients <= 0 {
		opts.MaxClients = DefaultMaxClients
	}
	if opts.TTL <= 0 {
		var longest time.Duration
		for _, r := range rates {
			longest = max(longest, r.Period())
		}
		opts.TTL = max(10*longest, MinBucketTTL)
	}
	b := &TollboothBudget{
		rates:    slices.Clone(rates),
		opts:     opts,
		sweepGap: min(opts.TTL/2, maxSweepInterval),
		clients:  make(map[string]int64),
	}
	for _, r := range rates {
		lmt := tollbooth.NewLimiter(float64(r.Count)/r.Period().Seconds(), &limiter.ExpirableOptions{DefaultExpirationTTL: opts.TTL})
		lmt.SetBurst(r.Count).SetTokenBucketExpirationTTL(opts.TTL)
		b.limiters = append(b.limiters, lmt)
	}
	b.nextSweep = time.Now().Add(b.sweepGap)
	return b
}

// Allow counts one request of client; see Budget.
func (b *TollboothBudget) Allow(client string) (bool, Rate, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if !now.Before(b.nextSweep) {
		b.sweep(now)
		b.nextSweep = now.Add(b.sweepGap)
	}
	key := b.admit(client, now)
	for i, lmt := range b.limiters {
		if lmt.LimitReached(key) {
			r := b.rates[i]
			return false, r, refillTime(r)
		}
	}
	return true, Rate{}, 0
}

// admit returns the bucket key of client: its own, or the overflow key when
// it is not tracked and the table is full. The expiry recorded here is the
// one tollbooth gives the buckets it creates in the same Allow (a few
// microseconds later).
func (b *TollboothBudget) admit(client string, now time.Time) string {
	exp, ok := b.clients[client]
	if ok && now.UnixNano() < exp {
		return client
	}
	if !ok && len(b.clients) >= b.opts.MaxClients {
		if b.opts.Logger != nil && !now.Before(b.nextWarn) {
			b.nextWarn = now.Add(time.Minute)
			b.opts.Logger.Warn("rate limit: client table full; new clients share one budget until buckets expire",
				"max_clients", b.opts.MaxClients, "bucket_ttl", b.opts.TTL.String())
		}
		return overflowKey
	}
	b.clients[client] = now.Add(b.opts.TTL).UnixNano()
	return client
}

// sweep drops the clients whose buckets have expired, here and in the
// limiters.
func (b *TollboothBudget) sweep(now time.Time) {
	n := now.UnixNano()
	for k, exp := range b.clients {
		if exp <= n {
			delete(b.clients, k)
		}
	}
	for _, lmt := range b.limiters {
		lmt.DeleteExpiredTokenBuckets()
	}
}

// Rebuild is the budget of rates after a reload: old itself, buckets and
// all, when the rates and MaxClients are unchanged, a new budget when they
// changed, and nil when rates is empty (no limit).
func Rebuild(old *TollboothBudget, rates []Rate, opts TollboothOptions) *TollboothBudget {
	if len(rates) == 0 {
		return nil
	}
	if opts.MaxClients <= 0 {
		opts.MaxClients = DefaultMaxClients
	}
	if old != nil && slices.Equal(old.rates, rates) && old.opts.MaxClients == opts.MaxClients {
		return old
	}
	return NewTollboothBudget(rates, opts)
}

// Len is the number of clients tracked.
func (b *TollboothBudget) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.clients)
}

// Rates are the rates the budget enforces.
func (b *TollboothBudget) Rates() []Rate { return slices.Clone(b.rates) }

// refillTime is how long one token of r takes to refill, in whole seconds
// and at least one: when r's bucket is empty, it holds less than one token,
// so the client may try again after at most this long.
func refillTime(r Rate) time.Duration {
	d := r.Period() / time.Duration(r.Count)
	return max((d + time.Second - 1).Truncate(time.Second), time.Second)
}
