package ratelimit_test

import (
	"testing"
	"time"

	"github.com/gocolytics/gocolytics/ingest/ratelimit"
)

// TestLinkBudget_Allow: a LinkBudget spends the SharedBudget it asks, and
// carries a refusal's rate and wait back intact.
func TestLinkBudget_Allow(t *testing.T) {
	rates, err := ratelimit.Parse("3 per 2 hours; 100/day")
	if err != nil {
		t.Fatal(err)
	}
	shared := ratelimit.NewSharedBudget(rates, ratelimit.LocalOptions{})
	asks := 0
	b := ratelimit.LinkBudget{Call: func(q []byte) ([]byte, error) { asks++; return shared.Answer(q), nil }}
	for i := range 3 {
		if ok, _, _ := b.Allow("client-a"); !ok {
			t.Fatalf("request %d refused", i+1)
		}
	}
	ok, r, wait := b.Allow("client-a")
	if ok || r != rates[0] || wait != 40*time.Minute {
		t.Errorf("4th request: got %v, %+v, %v; want refused by %+v after 40m", ok, r, wait, rates[0])
	}
	if ok, _, _ := b.Allow("client-b"); !ok {
		t.Errorf("another client was refused")
	}
	if asks != 5 {
		t.Errorf("got %d questions, want 5", asks)
	}

	// A reload with the same rates keeps the buckets; "off" lets all through.
	shared.Reconfigure(rates, ratelimit.LocalOptions{})
	if ok, _, _ := b.Allow("client-a"); ok {
		t.Errorf("a reload with the same rates refilled the budget")
	}
	shared.Reconfigure(nil, ratelimit.LocalOptions{})
	if ok, _, _ := b.Allow("client-a"); !ok {
		t.Errorf("refused with the rate limit off")
	}
}
