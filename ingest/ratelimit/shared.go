package ratelimit

import (
	"encoding/binary"
	"sync/atomic"
	"time"
)

// Worker processes spend one budget: the supervisor's. A worker's Budget is
// a LinkBudget, which sends each Allow over the link to the supervisor
// (shard/link's FrameCall, PROTOCOL.md), where a SharedBudget answers it from
// the one LocalBudget of the whole server. So a client has one budget
// whichever worker its connections land on, and a worker that dies loses
// nothing of it.
//
// The question is BudgetAsk followed by the client key. The answer is one
// byte (1 allowed, 0 refused), then, when refused, the exceeded rate's
// count, multiplier and unit and the wait in milliseconds, each a uvarint
// (the unit length-prefixed).
const BudgetAsk byte = 'A'

// LinkBudget is the Budget of a worker process: Call sends a question to
// the supervisor and returns its answer (link.Client.Call).
type LinkBudget struct {
	Call func(question []byte) ([]byte, error)
}

// Allow asks the supervisor's budget. When the supervisor cannot be asked
// the request is let through: its events cannot be committed either, so it
// is answered 503 anyway.
func (b LinkBudget) Allow(client string) (bool, Rate, time.Duration) {
	q := make([]byte, 0, 1+len(client))
	q = append(append(q, BudgetAsk), client...)
	a, err := b.Call(q)
	if err != nil || len(a) == 0 || a[0] == 1 {
		return true, Rate{}, 0
	}
	r, wait, ok := decodeRefusal(a[1:])
	if !ok {
		return true, Rate{}, 0
	}
	return false, r, wait
}

// decodeRefusal reads the rest of a refusing answer.
func decodeRefusal(p []byte) (Rate, time.Duration, bool) {
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, false
		}
		p = p[n:]
		return v, true
	}
	count, ok1 := next()
	mult, ok2 := next()
	l, ok3 := next()
	if !ok1 || !ok2 || !ok3 || l > uint64(len(p)) {
		return Rate{}, 0, false
	}
	r := Rate{Count: int(count), Multiplier: int(mult), Unit: string(p[:l])}
	p = p[l:]
	ms, ok := next()
	return r, time.Duration(ms) * time.Millisecond, ok
}

// SharedBudget is the supervisor's end of LinkBudget: the one budget of
// every worker, kept across reloads that do not change the rates.
type SharedBudget struct {
	local atomic.Pointer[LocalBudget] // nil: no limit
}

// NewSharedBudget returns the budget of rates (none: no limit).
func NewSharedBudget(rates []Rate, opts LocalOptions) *SharedBudget {
	s := &SharedBudget{}
	s.Reconfigure(rates, opts)
	return s
}

// Reconfigure applies rates to every later question, keeping the buckets
// when they are unchanged (Rebuild).
func (s *SharedBudget) Reconfigure(rates []Rate, opts LocalOptions) {
	s.local.Store(Rebuild(s.local.Load(), rates, opts))
}

// Answer answers a LinkBudget's question.
func (s *SharedBudget) Answer(q []byte) []byte {
	b := s.local.Load()
	if len(q) == 0 || q[0] != BudgetAsk || b == nil {
		return []byte{1}
	}
	ok, r, wait := b.Allow(string(q[1:]))
	if ok {
		return []byte{1}
	}
	a := []byte{0}
	a = binary.AppendUvarint(a, uint64(r.Count))
	a = binary.AppendUvarint(a, uint64(r.Multiplier))
	a = binary.AppendUvarint(a, uint64(len(r.Unit)))
	a = append(a, r.Unit...)
	return binary.AppendUvarint(a, uint64(wait.Milliseconds()))
}
