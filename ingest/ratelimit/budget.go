package ratelimit

import (
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Budget is the per-client request budget behind RATE_LIMIT. Allow counts
// one request of client (a key from ClientKey) and says whether it may be
// served; when not, it names the Rate that was exceeded and how long the
// client should wait before trying again.
//
// The ingest server asks its Budget once per request, before reading the
// body. LocalBudget is the in-process implementation. Budget is an interface
// so that several worker processes can spend one budget: a worker's Budget
// forwards Allow to the process that holds the buckets (a short key out,
// three small values back), so a client gets the same budget whichever
// worker answers it. Implementations must be safe for concurrent use.
type Budget interface {
	Allow(client string) (ok bool, exceeded Rate, retryAfter time.Duration)
}

// Defaults of the in-process budget.
const (
	// DefaultMaxClients is how many clients a LocalBudget tracks at most,
	// and how many networks besides; see LocalBudget for what happens when
	// both are full.
	DefaultMaxClients = 100_000
	// MinBucketTTL is the shortest time a client's buckets are kept after
	// its last request.
	MinBucketTTL = 10 * time.Minute
	// maxSweepInterval is how often, at most, expired buckets are swept.
	maxSweepInterval = time.Minute
)

// LocalOptions tune a LocalBudget; a zero field means its default.
type LocalOptions struct {
	// MaxClients caps the tracked clients, and the tracked networks
	// (DefaultMaxClients).
	MaxClients int
	// TTL is how long a client's buckets are kept after its last request:
	// by default the longest period of the rates, at least MinBucketTTL.
	// Buckets left alone that long have refilled, so dropping them gives
	// no client more than its rate.
	TTL time.Duration
	// Logger is told, at most once a minute, that the client table is full.
	Logger *slog.Logger
}

// LocalBudget keeps one token bucket per client and rate
// (golang.org/x/time/rate): each bucket holds up to Count tokens, starts
// full and refills continuously at Count per Period; a request takes one
// token from every rate's bucket, in the order the rates were written, and
// is refused by the first bucket that is empty (buckets before it have
// still spent their token; a refusing bucket spends none).
//
// Memory is bounded two ways. Buckets are dropped TTL after their last
// request (swept at most a minute later), so an active client keeps its
// bucket, empty or not, for as long as it keeps sending. And at most
// MaxClients clients are tracked. While that table is full, a client not in
// it spends the budget of its network, an IPv4 /24 or IPv6 /48, of the same
// rates (at most MaxClients networks are tracked), so a flood from one
// network neither grows memory nor locks out clients from other networks.
// Only when the networks are full as well do newcomers share one budget per
// address family, which takes MaxClients distinct clients and MaxClients
// distinct networks at once. (tollbooth, used before, counted a bucket's
// life from its creation and gave an active client a full bucket again
// each TTL; it offers no way to count from the last use.)
type LocalBudget struct {
	rates    []Rate
	opts     LocalOptions
	sweepGap time.Duration

	mu        sync.Mutex
	clients   map[string]*buckets // by client key
	networks  map[string]*buckets // by network, for clients not in clients
	families  map[string]*buckets // "ipv4", "ipv6", "other": the last resort
	nextSweep time.Time
	nextWarn  time.Time
}

// buckets are one key's token buckets, one per rate, and its last request.
type buckets struct {
	limiters []*rate.Limiter
	lastUse  time.Time
}

// NewLocalBudget returns the in-process budget for rates, which must not
// be empty.
func NewLocalBudget(rates []Rate, opts LocalOptions) *LocalBudget {
	if opts.MaxClients <= 0 {
		opts.MaxClients = DefaultMaxClients
	}
	if opts.TTL <= 0 {
		var longest time.Duration
		for _, r := range rates {
			longest = max(longest, r.Period())
		}
		opts.TTL = max(longest, MinBucketTTL)
	}
	b := &LocalBudget{
		rates:    slices.Clone(rates),
		opts:     opts,
		sweepGap: min(opts.TTL/2, maxSweepInterval),
		clients:  make(map[string]*buckets),
		networks: make(map[string]*buckets),
		families: make(map[string]*buckets),
	}
	b.nextSweep = time.Now().Add(b.sweepGap)
	return b
}

func (b *LocalBudget) newBuckets() *buckets {
	bs := &buckets{limiters: make([]*rate.Limiter, len(b.rates))}
	for i, r := range b.rates {
		bs.limiters[i] = rate.NewLimiter(rate.Limit(float64(r.Count)/r.Period().Seconds()), r.Count)
	}
	return bs
}

// Allow counts one request of client; see Budget.
func (b *LocalBudget) Allow(client string) (bool, Rate, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if !now.Before(b.nextSweep) {
		b.sweep(now)
		b.nextSweep = now.Add(b.sweepGap)
	}
	bs := b.admit(client, now)
	bs.lastUse = now
	for i, lmt := range bs.limiters {
		if !lmt.AllowN(now, 1) {
			r := b.rates[i]
			return false, r, refillTime(r)
		}
	}
	return true, Rate{}, 0
}

// admit returns the buckets client spends: its own; or, when the client
// table is full, its network's; or, when that table is full too, its
// address family's.
func (b *LocalBudget) admit(client string, now time.Time) *buckets {
	if bs := b.bucketsIn(b.clients, client, b.opts.MaxClients); bs != nil {
		return bs
	}
	if b.opts.Logger != nil && !now.Before(b.nextWarn) {
		b.nextWarn = now.Add(time.Minute)
		b.opts.Logger.Warn("rate limit: client table full; new clients share the budget of their network (IPv4 /24, IPv6 /48) until buckets expire",
			"max_clients", b.opts.MaxClients, "bucket_ttl", b.opts.TTL.String())
	}
	network, family := networkOf(client)
	if bs := b.bucketsIn(b.networks, network, b.opts.MaxClients); bs != nil {
		return bs
	}
	// Three families at most: never full.
	return b.bucketsIn(b.families, family, len(b.families)+1)
}

// bucketsIn returns the buckets of key in table m, adding them while m
// holds fewer than limit keys; nil when key is new and m is full.
func (b *LocalBudget) bucketsIn(m map[string]*buckets, key string, limit int) *buckets {
	if bs, ok := m[key]; ok {
		return bs
	}
	if len(m) >= limit {
		return nil
	}
	bs := b.newBuckets()
	m[key] = bs
	return bs
}

// networkOf is the network of a client key (from ClientKey): the /24 of an
// IPv4 address, the /48 of an IPv6 /64; and its address family. A key that
// is neither stands for itself in family "other".
func networkOf(client string) (network, family string) {
	if a, err := netip.ParseAddr(client); err == nil && a.Is4() {
		p, _ := a.Prefix(24)
		return p.String(), "ipv4"
	}
	if p, err := netip.ParsePrefix(client); err == nil && p.Addr().Is6() {
		p, _ = p.Addr().Prefix(48)
		return p.String(), "ipv6"
	}
	return client, "other"
}

// sweep drops the buckets not used for a TTL.
func (b *LocalBudget) sweep(now time.Time) {
	for _, m := range []map[string]*buckets{b.clients, b.networks, b.families} {
		for k, bs := range m {
			if now.Sub(bs.lastUse) >= b.opts.TTL {
				delete(m, k)
			}
		}
	}
}

// Rebuild returns the budget for rates and opts: old itself when it already
// enforces them (so a reload keeps the clients' buckets), a new one
// otherwise, nil for no rates.
func Rebuild(old *LocalBudget, rates []Rate, opts LocalOptions) *LocalBudget {
	if len(rates) == 0 {
		return nil
	}
	if opts.MaxClients <= 0 {
		opts.MaxClients = DefaultMaxClients
	}
	if old != nil && slices.Equal(old.rates, rates) && old.opts.MaxClients == opts.MaxClients {
		return old
	}
	return NewLocalBudget(rates, opts)
}

// Len is the number of clients tracked (not counting networks).
func (b *LocalBudget) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.clients)
}

// Rates are the rates the budget enforces.
func (b *LocalBudget) Rates() []Rate { return slices.Clone(b.rates) }

// refillTime is how long one token of r takes to refill, in whole seconds
// and at least one: when r's bucket is empty, it holds less than one token,
// so the client may try again after at most this long.
func refillTime(r Rate) time.Duration {
	d := r.Period() / time.Duration(r.Count)
	return max((d + time.Second - 1).Truncate(time.Second), time.Second)
}
